"""API key lifecycle (SPEC §8): create, authenticate, rotate with grace, revoke, contacts."""

from __future__ import annotations

import io
import logging
import re
from datetime import timedelta
from http import HTTPStatus

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from accounts.audit import Actor
from accounts.models import AuditEvent
from apikeys.authentication import ApiKeyAuthentication
from apikeys.models import ApiKey
from apikeys.selectors import apikey_by_digest
from apikeys.services import (
    GRACE_PERIODS,
    apikey_create,
    apikey_digest,
    apikey_revoke,
    apikey_rotate,
    apikey_update_contacts,
)

LIST = "/v1/transactional/email"
SEND = "/v1/transactional/email/send"


def client_for(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def status_of(plaintext: str) -> int:
    return client_for(plaintext).get(LIST).status_code


def test_a_key_has_the_documented_shape_and_only_its_digest_is_stored(owner):
    created = apikey_create(owner=owner, label="Payments")

    assert re.fullmatch(r"alice_v1_[A-Za-z0-9]{43}", created.plaintext)
    key = ApiKey.objects.get()
    assert key.digest == apikey_digest(created.plaintext)
    assert key.digest != created.plaintext and len(key.digest) == 64
    assert key.last_five == created.plaintext[-5:]
    assert key.scopes == ["send", "read"]
    assert key.contacts == ["alice@hdb.gov.sg"]
    assert timedelta(days=181) < key.valid_until - timezone.now() <= timedelta(days=182)


def test_test_keys_carry_test_in_the_prefix(owner):
    created = apikey_create(owner=owner, label="CI", test=True)

    assert created.plaintext.startswith("alice_test_v1_")
    assert created.key.mode == "test"


def test_the_plaintext_is_never_stored_or_logged(owner, caplog):
    caplog.set_level(logging.DEBUG)
    created = apikey_create(owner=owner, label="Secret check")
    client_for(created.plaintext).get(LIST)
    apikey_rotate(key=created.key, grace=GRACE_PERIODS["1h"])

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    secret = created.plaintext.split("_v1_")[1]
    assert secret not in dump.getvalue()
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("contacts", "expected"),
    [
        (
            [" Ops@HDB.gov.sg ", "ops@hdb.gov.sg", "dev@hdb.gov.sg"],
            ["dev@hdb.gov.sg", "ops@hdb.gov.sg"],
        ),
    ],
)
def test_contacts_are_lowercased_and_deduplicated(owner, contacts, expected):
    created = apikey_create(owner=owner, label="x", contacts=contacts)

    assert created.key.contacts == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"contacts": []}, "at least one notification contact"),
        ({"contacts": ["not-an-address"]}, "Not a valid email address"),
        ({"valid_for": timedelta(days=400)}, "at most 12 months"),
        ({"scopes": ["admin"]}, "Scopes must be some of"),
        ({"label": "  "}, "label"),
    ],
)
def test_invalid_key_options_are_refused(owner, options, message):
    with pytest.raises(ValidationError, match=message):
        apikey_create(owner=owner, **{"label": "x", **options})
    assert not ApiKey.objects.exists()


def test_a_key_stops_working_the_second_it_expires(owner):
    created = apikey_create(owner=owner, label="x", valid_for=timedelta(days=30))
    valid_until = created.key.valid_until

    with time_machine.travel(valid_until - timedelta(seconds=1), tick=False):
        assert status_of(created.plaintext) == HTTPStatus.OK
    with time_machine.travel(valid_until + timedelta(seconds=1), tick=False):
        assert status_of(created.plaintext) == HTTPStatus.UNAUTHORIZED


def test_rotation_keeps_both_keys_working_for_the_grace_period(owner):
    old = apikey_create(owner=owner, label="Payments", contacts=["ops@hdb.gov.sg"])

    new = apikey_rotate(key=old.key, grace=GRACE_PERIODS["1h"], actor=Actor.of(owner))

    old.key.refresh_from_db()
    assert new.key.label == "Payments"
    assert new.key.contacts == ["ops@hdb.gov.sg"]
    assert new.key.predecessor == old.key
    grace_end = old.key.valid_until
    assert timedelta(minutes=59) < grace_end - timezone.now() <= timedelta(hours=1)
    assert status_of(old.plaintext) == HTTPStatus.OK
    assert status_of(new.plaintext) == HTTPStatus.OK
    with time_machine.travel(grace_end - timedelta(seconds=1), tick=False):
        assert status_of(old.plaintext) == HTTPStatus.OK
    with time_machine.travel(grace_end + timedelta(seconds=1), tick=False):
        assert status_of(old.plaintext) == HTTPStatus.UNAUTHORIZED
        assert status_of(new.plaintext) == HTTPStatus.OK


def test_rotation_with_no_grace_stops_the_old_key_at_once(owner):
    old = apikey_create(owner=owner, label="x")

    apikey_rotate(key=old.key, grace=GRACE_PERIODS["0"])

    assert status_of(old.plaintext) == HTTPStatus.UNAUTHORIZED


def test_grace_never_extends_a_key(owner):
    old = apikey_create(owner=owner, label="x", valid_for=timedelta(hours=2))

    apikey_rotate(key=old.key, grace=GRACE_PERIODS["30d"])

    old.key.refresh_from_db()
    assert old.key.valid_until - timezone.now() <= timedelta(hours=2)


def test_a_key_is_rotated_once_and_never_after_revocation(owner):
    first = apikey_create(owner=owner, label="x")
    apikey_rotate(key=first.key, grace=GRACE_PERIODS["1h"])
    with pytest.raises(ValidationError, match="already been rotated"):
        apikey_rotate(key=first.key, grace=GRACE_PERIODS["1h"])

    revoked = apikey_revoke(key=apikey_create(owner=owner, label="y").key)
    with pytest.raises(ValidationError, match="revoked"):
        apikey_rotate(key=revoked, grace=GRACE_PERIODS["1h"])


def test_revocation_takes_effect_on_the_next_request(owner):
    created = apikey_create(owner=owner, label="x")
    assert status_of(created.plaintext) == HTTPStatus.OK

    apikey_revoke(key=created.key, actor=Actor.of(owner))

    response = client_for(created.plaintext).post(SEND, {}, format="json")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "unauthenticated"


def test_every_key_event_is_audited(owner):
    actor = Actor.of(owner, ip_address="203.0.113.9")
    created = apikey_create(owner=owner, label="x", actor=actor)
    apikey_update_contacts(key=created.key, contacts=["ops@hdb.gov.sg"], actor=actor)
    successor = apikey_rotate(key=created.key, grace=GRACE_PERIODS["1h"], actor=actor)
    apikey_revoke(key=successor.key, actor=actor)
    apikey_revoke(key=successor.key, actor=actor)  # a second revoke changes nothing

    events = list(AuditEvent.objects.order_by("pk"))
    assert [event.action for event in events] == [
        "apikey.created",
        "apikey.contacts_updated",
        "apikey.created",
        "apikey.rotated",
        "apikey.revoked",
    ]
    assert {event.agency_id for event in events} == {owner.agency_id}
    assert {event.actor_email for event in events} == {"alice@hdb.gov.sg"}
    assert {event.ip_address for event in events} == {"203.0.113.9"}
    assert events[1].details == {"before": ["alice@hdb.gov.sg"], "after": ["ops@hdb.gov.sg"]}


def test_authentication_costs_one_query_and_writes_last_used_once_a_minute(
    owner, django_assert_max_num_queries
):
    created = apikey_create(owner=owner, label="x")
    client = client_for(created.plaintext)
    client.get(LIST)  # the first use writes last_used_at
    first_use = ApiKey.objects.get().last_used_at
    assert first_use is not None

    request = Request(
        APIRequestFactory().get(LIST, HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")
    )
    with django_assert_max_num_queries(1):
        user, key = ApiKeyAuthentication().authenticate(request)
    assert key.pk == created.key.pk and user == owner

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        client.get(LIST)
    assert ApiKey.objects.get().last_used_at > first_use


def test_a_key_without_the_read_scope_may_not_read(owner):
    created = apikey_create(owner=owner, label="sender only", scopes=["send"])

    response = client_for(created.plaintext).get(LIST)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == {
        "code": "unauthorized",
        "message": "This API key may not read emails",
    }


def test_the_key_lookup_builds_the_same_objects_as_the_orm(owner):
    created = apikey_create(owner=owner, label="x", scopes=["send"])
    ApiKey.objects.filter(pk=created.key.pk).update(last_used_at=timezone.now())
    digest = ApiKey.objects.get(pk=created.key.pk).digest

    key = apikey_by_digest(digest)

    expected = ApiKey.objects.select_related("agency", "owner").get(digest=digest)
    for loaded, orm in (
        (key, expected),
        (key.agency, expected.agency),
        (key.owner, expected.owner),
    ):
        for field in type(orm)._meta.concrete_fields:
            value, wanted = getattr(loaded, field.attname), getattr(orm, field.attname)
            assert (value, type(value)) == (wanted, type(wanted)), field.name
    assert key.scopes == ["send"] and key.agency.pk == owner.agency_id
    assert apikey_by_digest("0" * len(digest)) is None
