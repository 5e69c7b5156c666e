"""``apikey list|rotate|revoke``: operators script these, so their output is pinned."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apikeys.models import ApiKey
from apikeys.services import apikey_create, apikey_digest
from tests.factories import UserFactory


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command("apikey", *args, stdout=out)
    return out.getvalue().splitlines()


def test_list_prints_one_line_per_key(owner):
    active = apikey_create(owner=owner, label="Payments").key
    revoked = apikey_create(owner=owner, label="Old").key
    revoked.revoked_at = timezone.now()
    revoked.save()
    UserFactory(agency=owner.agency, email="bob@hdb.gov.sg")

    lines = run("list", "--email", "ALICE@hdb.gov.sg")

    assert lines == [
        f"{active.pk}\tPayments\t{active.last_five}\t{active.valid_until.isoformat()}\tactive",
        f"{revoked.pk}\tOld\t{revoked.last_five}\t{revoked.valid_until.isoformat()}\trevoked",
    ]
    assert run("list", "--email", "bob@hdb.gov.sg") == []


def test_rotate_prints_the_successor_key_alone_on_the_last_line(owner):
    old = apikey_create(owner=owner, label="Payments").key

    lines = run("rotate", str(old.pk), "--grace", "7d")

    successor = ApiKey.objects.get(digest=apikey_digest(lines[-1]))
    assert successor.predecessor == old
    old.refresh_from_db()
    assert timedelta(days=6, hours=23) < old.valid_until - timezone.now() <= timedelta(days=7)


def test_revoke_stops_the_key(owner):
    key = apikey_create(owner=owner, label="x").key

    run("revoke", str(key.pk))

    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [(["revoke", "999999"], "no API key with id 999999"), (["rotate", "999999"], "no API key")],
)
def test_unknown_ids_are_command_errors(db, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_an_unknown_grace_period_is_refused(owner):
    key = apikey_create(owner=owner, label="x").key

    with pytest.raises(CommandError):
        run("rotate", str(key.pk), "--grace", "2w")
