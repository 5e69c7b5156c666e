from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent
from emails.models import VerifiedSender
from emails.services.senders import sender_verify
from tests.factories import AgencyFactory, VerifiedSenderFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def verify_sender(*args: str) -> list[str]:
    out = StringIO()
    call_command("verify_sender", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def hdb():
    return AgencyFactory(domain="hdb.gov.sg", name="Housing Board")


@time_machine.travel(NOW, tick=False)
def test_it_verifies_the_address_for_the_agency_that_owns_its_domain(hdb):
    lines = verify_sender("NoReply@HDB.gov.sg")

    sender = VerifiedSender.objects.get()
    assert sender.address == "noreply@hdb.gov.sg"
    assert sender.agency == hdb
    assert sender.verified_at == NOW
    assert lines == [f"Verified noreply@hdb.gov.sg for Housing Board (id {hdb.pk})."]


def test_verifying_again_keeps_the_first_verification_time(hdb):
    with time_machine.travel(NOW, tick=False):
        verify_sender("noreply@hdb.gov.sg")

    lines = verify_sender("noreply@hdb.gov.sg")

    assert VerifiedSender.objects.get().verified_at == NOW
    assert "already verified" in lines[0]


def test_it_completes_a_pending_verification_of_the_same_agency(hdb):
    VerifiedSenderFactory(agency=hdb, address="noreply@hdb.gov.sg", verified_at=None)

    verify_sender("noreply@hdb.gov.sg")

    sender = VerifiedSender.objects.get()
    assert sender.agency == hdb
    assert sender.verified_at is not None


def test_name_is_accepted_but_not_stored(hdb):
    lines = verify_sender("noreply@hdb.gov.sg", "--name", "HDB Notifications")

    assert VerifiedSender.objects.get().verified_at is not None
    assert lines[-1] == (
        'Note: --name is not stored; send with "from": '
        '"HDB Notifications <noreply@hdb.gov.sg>" to show that name.'
    )


@pytest.mark.parametrize("address", ["noreply@unknown.gov.sg", "noreply@mail.hdb.gov.sg"])
def test_it_refuses_an_address_whose_domain_no_agency_owns(hdb, address):
    with pytest.raises(CommandError, match="no agency owns the domain"):
        verify_sender(address)

    assert not VerifiedSender.objects.exists()


@pytest.mark.parametrize(("verified_at", "state"), [(NOW, "verified"), (None, "awaiting")])
def test_it_refuses_an_address_claimed_by_another_agency(hdb, verified_at, state):
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    VerifiedSenderFactory(agency=other, address="noreply@hdb.gov.sg", verified_at=verified_at)

    with pytest.raises(CommandError, match=f"already {state}.* for another agency \\(Manpower"):
        verify_sender("noreply@hdb.gov.sg")

    sender = VerifiedSender.objects.get()
    assert sender.agency == other
    assert sender.verified_at == verified_at


@pytest.mark.parametrize("address", ["not-an-address", "Name <noreply@hdb.gov.sg>", "a@b"])
def test_it_refuses_an_invalid_address(hdb, address):
    with pytest.raises(CommandError, match="is not a valid email address"):
        verify_sender(address)

    assert not VerifiedSender.objects.exists()


def test_it_needs_an_address():
    with pytest.raises(CommandError, match="address"):
        verify_sender()


def test_the_service_verifies_any_domain_for_an_explicit_agency(hdb):
    sender, changed = sender_verify(address="Clerk@Example.org", agency=hdb)

    assert changed
    assert sender.address == "clerk@example.org"
    assert sender.agency == hdb


def test_verification_is_audited_once(hdb):
    verify_sender("noreply@hdb.gov.sg")
    verify_sender("noreply@hdb.gov.sg")

    event = AuditEvent.objects.get(action="sender.verified")
    assert event.agency == hdb
    assert event.actor_kind == AuditEvent.ActorKind.SYSTEM
    assert event.target_repr == "noreply@hdb.gov.sg"
