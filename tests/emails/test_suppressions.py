"""An agency's suppression list: the services, their audit events, and the send API refusing a
suppressed recipient exactly like a blacklisted one (SPEC §4)."""

from __future__ import annotations

import csv
import io
from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.audit import Actor
from accounts.models import AuditEvent
from emails.models import Email, Suppression
from emails.services.suppressions import (
    blocked_addresses_query,
    suppression_add,
    suppression_remove,
    suppressions_export_csv,
    suppressions_import_csv,
)
from tests.factories import BlacklistEntryFactory

SEND = "/v1/transactional/email/send"
BLACKLISTED = {"code": "invalid_template", "message": "Recipient email is blacklisted"}


@pytest.fixture
def actor(owner) -> Actor:
    return Actor.of(owner, ip_address="10.0.0.7")


def send(api, recipient="citizen@example.com", **extra):
    body = {"recipient": recipient, "subject": "Hi", "body": "<p>Hi</p>", **extra}
    return api.client.post(SEND, body, format="json")


# --- services -----------------------------------------------------------------------------------


def test_add_normalises_the_address_and_audits_it(agency, owner, actor):
    entry, created = suppression_add(
        agency=agency, address=" Citizen@Example.COM ", reason="asked", source="admin", actor=actor
    )

    assert created
    assert (entry.address, entry.reason, entry.source, entry.created_by) == (
        "citizen@example.com",
        "asked",
        "admin",
        owner,
    )
    event = AuditEvent.objects.get()
    assert (event.action, event.agency, event.actor, event.ip_address) == (
        "suppression.added",
        agency,
        owner,
        "10.0.0.7",
    )
    assert event.details == {"address": "citizen@example.com", "source": "admin", "reason": "asked"}


def test_adding_twice_keeps_the_first_entry_and_audits_once(agency, actor):
    suppression_add(
        agency=agency, address="a@example.com", reason="complaint", source="complaint", actor=actor
    )
    entry, created = suppression_add(
        agency=agency, address="A@example.com", reason="again", source="admin", actor=actor
    )

    assert not created
    assert (entry.source, entry.reason) == ("complaint", "complaint")
    assert AuditEvent.objects.count() == 1


def test_add_refuses_a_malformed_address(agency, actor):
    with pytest.raises(ValidationError):
        suppression_add(agency=agency, address="nope", reason="", source="admin", actor=actor)

    assert not Suppression.objects.exists()


def test_remove_audits_what_the_entry_said(agency, owner, actor):
    suppression_add(
        agency=agency, address="a@example.com", reason="r1", source="admin", actor=actor
    )

    assert suppression_remove(agency=agency, address="A@example.com", reason="r2", actor=actor)

    assert not Suppression.objects.exists()
    event = AuditEvent.objects.get(action="suppression.removed")
    assert (event.agency, event.actor) == (agency, owner)
    assert event.details["address"] == "a@example.com"
    assert (event.details["reason"], event.details["added_reason"]) == ("r2", "r1")


def test_removing_an_address_that_is_not_suppressed_changes_nothing(agency, actor):
    assert not suppression_remove(agency=agency, address="a@example.com", reason="r", actor=actor)
    assert not AuditEvent.objects.exists()


def test_an_agency_cannot_remove_another_agency_entry(agency, outsider_api, actor):
    Suppression.objects.create(agency=outsider_api.agency, address="a@example.com", source="admin")

    assert not suppression_remove(agency=agency, address="a@example.com", reason="r", actor=actor)
    assert Suppression.objects.count() == 1


def test_import_reports_malformed_duplicate_and_already_suppressed_rows(agency, owner, actor):
    Suppression.objects.create(agency=agency, address="old@example.com", source="admin")
    content = b"Email,Name\nNew@Example.com,New\nbad@,x\nnew@example.COM,y\nold@example.com,z\n"

    report = suppressions_import_csv(agency=agency, file=content, actor=actor, reason="bulk")

    assert report.added == ["new@example.com"]
    assert [(r.line, r.value, r.reason) for r in report.rejected] == [
        (3, "bad@", "not a valid email address"),
        (4, "new@example.com", "duplicate of line 2"),
        (5, "old@example.com", "already suppressed"),
    ]
    new = Suppression.objects.get(address="new@example.com")
    assert (new.source, new.reason, new.created_by) == ("import", "bulk", owner)
    event = AuditEvent.objects.get(action="suppression.imported")
    assert event.details == {
        "reason": "bulk",
        "added": 1,
        "rejected": 3,
        "addresses": ["new@example.com"],
    }


def test_an_import_of_another_agency_addresses_is_independent(agency, outsider_api, actor):
    Suppression.objects.create(agency=outsider_api.agency, address="a@example.com", source="admin")

    report = suppressions_import_csv(agency=agency, file=b"a@example.com\n", actor=actor)

    assert report.added == ["a@example.com"]
    assert Suppression.objects.filter(address="a@example.com").count() == 2


def test_export_lists_only_the_agency_entries(agency, outsider_api, owner):
    Suppression.objects.create(
        agency=agency, address="b@example.com", source="complaint", reason="abuse"
    )
    Suppression.objects.create(
        agency=agency, address="a@example.com", source="admin", created_by=owner
    )
    Suppression.objects.create(agency=outsider_api.agency, address="c@example.com", source="admin")

    rows = list(csv.reader(io.StringIO("".join(suppressions_export_csv(agency=agency)))))

    assert rows[0] == ["address", "source", "reason", "created_at", "created_by"]
    assert [(r[0], r[1], r[2], r[4]) for r in rows[1:]] == [
        ("a@example.com", "admin", "", owner.email),
        ("b@example.com", "complaint", "abuse", ""),
    ]


def test_the_blocked_address_query_covers_both_lists(agency):
    BlacklistEntryFactory(address="black@example.com")
    Suppression.objects.create(agency=agency, address="ours@example.com", source="admin")

    sql, params = blocked_addresses_query(
        agency_id=agency.pk, addresses=["black@example.com", "ours@example.com", "fine@example.com"]
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        blocked = {address for (address,) in cursor.fetchall()}

    assert blocked == {"black@example.com", "ours@example.com"}


# --- the send API -------------------------------------------------------------------------------


def test_a_suppressed_recipient_is_refused_like_a_blacklisted_one(api):
    Suppression.objects.create(agency=api.agency, address="citizen@example.com", source="admin")

    response = send(api, recipient="Citizen@Example.com")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == BLACKLISTED
    email = Email.objects.get()
    assert (email.status, email.error_code) == ("UNSENT", "Error 400: Blacklisted recipient")


def test_suppressed_cc_and_bcc_are_dropped(api):
    for address in ("cc@example.com", "bcc@example.com"):
        Suppression.objects.create(agency=api.agency, address=address, source="complaint")

    response = send(api, cc=["cc@example.com", "ok-cc@example.com"], bcc=["bcc@example.com"])

    assert response.status_code == HTTPStatus.CREATED
    assert (response.json()["cc"], response.json()["bcc"]) == (["ok-cc@example.com"], [])
    errors = dict(Email.objects.get().recipients.values_list("address", "error_code"))
    assert errors == {
        "citizen@example.com": None,
        "cc@example.com": "Error 400: Blacklisted recipient",
        "ok-cc@example.com": None,
        "bcc@example.com": "Error 400: Blacklisted recipient",
    }


def test_another_agency_suppression_does_not_stop_this_agency(api, outsider_api):
    Suppression.objects.create(
        agency=outsider_api.agency, address="citizen@example.com", source="admin"
    )

    assert send(api).status_code == HTTPStatus.CREATED
    assert send(outsider_api).json() == BLACKLISTED


def test_the_from_check_still_comes_first(api):
    Suppression.objects.create(agency=api.agency, address="citizen@example.com", source="admin")

    response = send(api, **{"from": "someone@unverified.example.org"})

    assert response.json()["code"] == "invalid_from_address"


def test_the_send_looks_both_lists_up_at_once(api, monkeypatch):
    """The blacklist query became a UNION with the suppression list (one query, above)."""
    from emails.services import send as send_module

    calls = []
    original = send_module.blocked_addresses_query

    def recording(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(send_module, "blocked_addresses_query", recording)

    assert send(api, cc=["cc@example.com"]).status_code == HTTPStatus.CREATED
    assert calls == [
        {"agency_id": api.agency.pk, "addresses": ["citizen@example.com", "cc@example.com"]}
    ]


def test_removing_a_suppression_lets_the_next_send_through(api, actor):
    suppression_add(
        agency=api.agency, address="citizen@example.com", reason="", source="admin", actor=actor
    )
    assert send(api).status_code == HTTPStatus.BAD_REQUEST

    suppression_remove(agency=api.agency, address="citizen@example.com", reason="ok", actor=actor)

    assert send(api).status_code == HTTPStatus.CREATED


def test_system_emails_ignore_the_agency_suppression_list(agency):
    """A login code or key reminder must reach the agency's own people (documented decision);
    the global blacklist still applies."""
    from emails.services.system import email_send_system

    Suppression.objects.create(agency=agency, address="alice@hdb.gov.sg", source="admin")
    BlacklistEntryFactory(address="gone@hdb.gov.sg")

    email = email_send_system(
        agency=agency,
        to=["alice@hdb.gov.sg", "gone@hdb.gov.sg"],
        subject="Your login code",
        html="<p>ABC123</p>",
        tag="login",
    )

    assert email is not None
    assert list(email.recipients.values_list("address", flat=True)) == ["alice@hdb.gov.sg"]
