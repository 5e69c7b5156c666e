"""Single sender addresses: the confirmation link (signed, 48 hours, single use), its page, and
the rules about who may ask for which address."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
import time_machine
from django.core.signing import TimestampSigner

from accounts.audit import Actor
from accounts.models import AuditEvent, User
from emails.models import Email, VerifiedSender
from emails.services import senders
from emails.services.sender_domains import sender_domain_add, sender_domain_approve
from emails.services.senders import (
    LINK_EXPIRED,
    LINK_INVALID,
    LINK_SUPERSEDED,
    LINK_USED,
    ConfirmationError,
    SenderAddressError,
    confirmation_agency,
    confirmation_token,
    sender_address_add,
    sender_address_approve,
    sender_address_confirm,
    sender_address_remove,
)
from tests.factories import AgencyFactory, BlacklistEntryFactory, VerifiedSenderFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
ADDRESS = "noreply@hdb.gov.sg"


def ask(agency, owner, address: str = ADDRESS) -> VerifiedSender:
    return sender_address_add(agency=agency, address=address, actor=Actor.of(owner))


def link_of(address: str = ADDRESS) -> str:
    email = Email.objects.filter(recipient=address, tag="Sender confirmation").latest("id")
    return re.search(r'href="([^"]*/senders/confirm/[^"]+)"', email.html)[1]


def path_of(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


@time_machine.travel(NOW, tick=False)
def test_asking_emails_a_confirmation_link_on_behalf_of_the_service(agency, owner):
    sender = ask(agency, owner, " NoReply@HDB.gov.sg ")

    assert sender.address == ADDRESS
    assert sender.agency == agency
    assert sender.verified_at is None
    assert sender.requested_by == owner
    assert sender.confirmation_sent_at == NOW
    email = Email.objects.get(tag="Sender confirmation")
    assert email.recipient == ADDRESS
    assert email.subject == f"Confirm {ADDRESS} as a sender for Housing Board"
    assert link_of().startswith("http://127.0.0.1:8000/senders/confirm/")
    # Never the requesting agency's email: its members could read the link and confirm it.
    assert email.agency == confirmation_agency()
    assert not Email.objects.filter(agency=agency).exists()
    event = AuditEvent.objects.get(action="sender.requested")
    assert (event.agency, event.actor, event.target_repr) == (agency, owner, ADDRESS)


def test_opening_the_link_shows_a_button_and_confirms_nothing(agency, owner, client):
    ask(agency, owner)

    response = client.get(path_of(link_of()))

    assert response.status_code == HTTPStatus.OK
    assert f"Confirm {ADDRESS}" in response.text
    assert "Housing Board" in response.text
    assert VerifiedSender.objects.get().verified_at is None


def test_pressing_confirm_verifies_the_address(agency, owner, client):
    ask(agency, owner)

    response = client.post(path_of(link_of()), REMOTE_ADDR="203.0.113.9")

    assert response.status_code == HTTPStatus.OK
    assert f"{ADDRESS}</b> is confirmed" in response.text
    assert VerifiedSender.objects.get().verified_at is not None
    event = AuditEvent.objects.get(action="sender.verified")
    assert event.agency == agency
    assert event.ip_address == "203.0.113.9"
    assert event.details == {"via": "confirmation link"}


def test_a_link_works_once(agency, owner, client):
    ask(agency, owner)
    url = path_of(link_of())
    client.post(url)

    response = client.post(url)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert LINK_USED in response.text
    assert AuditEvent.objects.filter(action="sender.verified").count() == 1


def test_a_link_expires_after_48_hours(agency, owner):
    with time_machine.travel(NOW, tick=False):
        sender = ask(agency, owner)
        token = confirmation_token(sender)

    with time_machine.travel(NOW + timedelta(hours=47, minutes=59), tick=False):
        senders.sender_confirmation_get(token=token)  # still fine
    with (
        time_machine.travel(NOW + timedelta(hours=48, seconds=1), tick=False),
        pytest.raises(ConfirmationError, match=LINK_EXPIRED),
    ):
        sender_address_confirm(token=token)

    assert VerifiedSender.objects.get().verified_at is None


def test_the_expired_page_says_so(agency, owner, client):
    with time_machine.travel(NOW, tick=False):
        ask(agency, owner)
    with time_machine.travel(NOW + timedelta(days=3), tick=False):
        response = client.get(path_of(link_of()))

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert LINK_EXPIRED in response.text


def test_a_newer_link_voids_the_older_one(agency, owner):
    with time_machine.travel(NOW, tick=False):
        ask(agency, owner)
        first = link_of().rsplit("/", 1)[1]
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        ask(agency, owner)
        second = link_of().rsplit("/", 1)[1]

        with pytest.raises(ConfirmationError, match=LINK_SUPERSEDED):
            sender_address_confirm(token=first)
        sender_address_confirm(token=second)

    assert VerifiedSender.objects.get().verified_at is not None


def forged_tokens(sender: VerifiedSender) -> list[str]:
    genuine = confirmation_token(sender)
    value, _, signature = genuine.rpartition(":")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    payload = {"id": sender.pk, "sent": 0}
    return [
        f"{value}:{flipped}",  # a changed signature
        "not-a-token",
        TimestampSigner(salt="another.salt").sign_object(payload),  # another purpose's key
        TimestampSigner(key="guessed", salt=senders.CONFIRMATION_SALT).sign_object(payload),
        TimestampSigner(salt=senders.CONFIRMATION_SALT).sign_object(["not", "a", "dict"]),
        TimestampSigner(salt=senders.CONFIRMATION_SALT).sign_object({"id": sender.pk + 99}),
    ]


def test_forged_links_confirm_nothing(agency, owner, client):
    sender = ask(agency, owner)

    for token in forged_tokens(sender):
        with pytest.raises(ConfirmationError, match=LINK_INVALID):
            sender_address_confirm(token=token)
        response = client.post(f"/senders/confirm/{token}")
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert LINK_INVALID in response.text

    assert VerifiedSender.objects.get().verified_at is None


def test_a_removed_address_link_confirms_nothing(agency, owner):
    sender = ask(agency, owner)
    token = confirmation_token(sender)
    sender_address_remove(sender=sender, actor=Actor.of(owner))

    with pytest.raises(ConfirmationError, match=LINK_INVALID):
        sender_address_confirm(token=token)
    assert AuditEvent.objects.get(action="sender.removed").target_repr == ADDRESS


# -- who may ask for what -----------------------------------------------------------------------


def test_an_address_verified_for_another_agency_is_refused(agency, owner):
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    VerifiedSenderFactory(agency=other, address=ADDRESS)

    with pytest.raises(SenderAddressError, match="verified by another agency"):
        ask(agency, owner)

    assert VerifiedSender.objects.get().agency == other
    assert not Email.objects.exists()


def test_an_address_on_a_domain_another_agency_verified_is_refused(agency, owner):
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    domain = sender_domain_add(agency=other, domain="mom.gov.sg", actor=Actor.system())
    sender_domain_approve(domain=domain, actor=Actor.system())

    with pytest.raises(SenderAddressError, match=r"domain of alerts@mom\.gov\.sg is verified"):
        ask(agency, owner, "alerts@mom.gov.sg")


def test_a_pending_request_of_another_agency_is_taken_over(agency, owner):
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    stale = VerifiedSenderFactory(
        agency=other, address=ADDRESS, verified_at=None, confirmation_sent_at=NOW
    )
    old_token = confirmation_token(stale)

    sender = ask(agency, owner)

    assert sender.pk == stale.pk
    assert sender.agency == agency
    with pytest.raises(ConfirmationError, match=LINK_SUPERSEDED):
        sender_address_confirm(token=old_token)
    released = AuditEvent.objects.get(action="sender.released")
    assert released.agency == other
    assert AuditEvent.objects.get(action="sender.requested").details == {
        "released_from_agency": other.pk
    }


def test_an_address_already_verified_for_the_agency_is_refused(agency, owner):
    VerifiedSenderFactory(agency=agency, address=ADDRESS)

    with pytest.raises(SenderAddressError, match="already verified"):
        ask(agency, owner)


def test_asking_again_within_a_minute_is_refused(agency, owner):
    with time_machine.travel(NOW, tick=False):
        ask(agency, owner)
    with (
        time_machine.travel(NOW + timedelta(seconds=59), tick=False),
        pytest.raises(SenderAddressError, match="moments ago"),
    ):
        ask(agency, owner)

    assert Email.objects.count() == 1


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("not-an-address", "valid email address"),
        ("Name <noreply@hdb.gov.sg>", "valid email address"),
        ("info@mail.postman.gov.sg", "default sender"),
        ("donotreply@mail.postman.gov.sg", "default sender"),
    ],
)
def test_it_refuses_what_cannot_be_a_sender(agency, owner, address, message):
    with pytest.raises(SenderAddressError, match=message):
        ask(agency, owner, address)

    assert not VerifiedSender.objects.exists()


def test_a_blacklisted_address_cannot_be_asked_for(agency, owner):
    BlacklistEntryFactory(address=ADDRESS)

    with pytest.raises(SenderAddressError, match="blacklist"):
        ask(agency, owner)

    assert not VerifiedSender.objects.exists()
    assert not AuditEvent.objects.filter(action="sender.requested").exists()


def test_staff_can_approve_without_the_link(agency, owner):
    staff = User.objects.create_user("ops@postman.gov.sg", is_staff=True)
    sender = ask(agency, owner)

    sender = sender_address_approve(sender=sender, actor=Actor.of(staff))

    assert sender.verified_at is not None
    event = AuditEvent.objects.get(action="sender.approved")
    assert event.actor_kind == AuditEvent.ActorKind.STAFF
    with pytest.raises(ConfirmationError, match=LINK_USED):
        sender_address_confirm(token=confirmation_token(sender))
