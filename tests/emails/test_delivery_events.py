"""The worker's outcomes as events, the open-tracking pixel in what it sends, and SIGTERM in the
middle of a hand-off."""

from __future__ import annotations

import os
import re
import signal
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import AuditEvent
from emails.models import BlacklistEntry, Email, EmailEvent, Status
from emails.tasks import deliver_email
from emails.tracking import email_id_from_open_token
from tests.factories import EmailFactory
from tests.queue import queued_email_ids

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queue")]

T = EmailEvent.Type
PIXEL = re.compile(r'<img src="(?P<url>[^"]+/t/o/(?P<token>[^"/]+)\.gif)" width="1" height="1"')


def events(email: Email) -> list[tuple[str, str, str]]:
    return [
        (e.recipient.address, e.type, e.detail)
        for e in EmailEvent.objects.filter(email=email).select_related("recipient").order_by("id")
    ]


def html_part(received) -> str:
    return received.message.get_body(preferencelist=("html",)).get_content()


def test_an_accepted_hand_off_records_one_accepted_event_per_recipient(smtp_peer):
    email = EmailFactory(recipient="alice@example.com", bcc=["bob@example.com"])

    deliver_email(email.id)

    assert events(email) == [
        ("alice@example.com", T.ACCEPTED, "250 Ok queued as peer-1"),
        ("bob@example.com", T.ACCEPTED, "250 Ok queued as peer-1"),
    ]
    email.refresh_from_db()
    assert email.accepted_at == EmailEvent.objects.filter(email=email).first().occurred_at


def test_a_5xx_records_a_bounce_event_and_an_audited_blacklist_entry(smtp_peer):
    smtp_peer.refuse_rcpt("gone@example.com", "550 5.1.1 No such user")
    email = EmailFactory(recipient="alice@example.com", cc=["gone@example.com"])

    deliver_email(email.id)

    assert events(email) == [
        ("alice@example.com", T.ACCEPTED, "250 Ok queued as peer-1"),
        ("gone@example.com", T.BOUNCED, "550 5.1.1 No such user"),
    ]
    assert BlacklistEntry.objects.get().address == "gone@example.com"
    audit = AuditEvent.objects.get(action="blacklist.added")
    assert audit.details["source"] == BlacklistEntry.Source.HARD_BOUNCE


def test_a_transient_failure_records_a_deferred_event_per_pending_recipient(smtp_peer):
    smtp_peer.stop()
    email = EmailFactory(recipient="alice@example.com", cc=["carol@example.com"])

    deliver_email(email.id)

    recorded = events(email)
    assert [(address, type) for address, type, _ in recorded] == [
        ("alice@example.com", T.DEFERRED),
        ("carol@example.com", T.DEFERRED),
    ]
    assert "ConnectionRefusedError" in recorded[0][2]
    assert "retry at" in recorded[0][2]
    email.refresh_from_db()
    assert (email.status, email.error_code, email.accepted_at) == (Status.UNSENT, None, None)


def test_a_retry_that_succeeds_keeps_the_whole_history(smtp_peer):
    smtp_peer.refuse_rcpt("alice@example.com", "451 4.3.0 Try again later")
    email = EmailFactory(recipient="alice@example.com")
    deliver_email(email.id)
    smtp_peer.handler.rcpt_replies.clear()
    retry_at = Email.objects.get(id=email.id).claimed_until

    with time_machine.travel(retry_at + timedelta(seconds=1), tick=False):
        deliver_email(email.id)

    assert [type for _, type, _ in events(email)] == [T.DEFERRED, T.ACCEPTED]
    email.refresh_from_db()
    assert (email.status, email.claimed_until) == (Status.ACCEPTED, None)


def test_the_ses_message_id_in_the_relays_reply_is_stored_as_the_provider_message_id(smtp_peer):
    ses_id = "0100018c9a3c5b0e-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901-000000"
    smtp_peer.handler.accepted_reply = f"250 Ok {ses_id}"
    email = EmailFactory()

    deliver_email(email.id)

    email.refresh_from_db()
    assert email.provider_message_id == ses_id


def test_another_relays_reply_is_not_taken_for_a_provider_message_id(smtp_peer):
    smtp_peer.handler.accepted_reply = "250 2.0.0 Ok: queued as 4Xk2Lq0Zz3z1"
    email = EmailFactory()

    deliver_email(email.id)

    assert Email.objects.get(id=email.id).provider_message_id is None


def test_the_html_part_carries_an_open_pixel_with_a_signed_token_of_the_email(smtp_peer, settings):
    settings.PUBLIC_BASE_URL = "https://postman.example.gov.sg"
    email = EmailFactory(html="<p>Hello</p>")

    deliver_email(email.id)

    received = smtp_peer.received[0]
    html = html_part(received)
    match = PIXEL.search(html)
    assert match, html
    assert html.startswith("<p>Hello</p>")
    assert match["url"].startswith("https://postman.example.gov.sg/t/o/")
    assert email_id_from_open_token(match["token"]) == email.id
    signature = match["token"].split(".")[1]
    assert len(signature) >= 20 and signature != str(email.id)  # a signature, not the id
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    assert "/t/o/" not in text


def test_an_email_with_tracking_disabled_has_no_pixel(smtp_peer):
    email = EmailFactory(html="<p>Hello</p>", disable_tracking=True)

    deliver_email(email.id)

    assert html_part(smtp_peer.received[0]).strip() == "<p>Hello</p>"


@pytest.fixture
def sigterm_recorder():
    """Stands in for the worker's own SIGTERM action: records instead of dying."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one command at a time"])
def test_sigterm_before_data_releases_the_claim_and_requeues_the_email(
    smtp_peer, sigterm_recorder, django_capture_on_commit_callbacks, pipelining
):
    smtp_peer.handler.pipelining = pipelining
    smtp_peer.handler.on_rcpt = lambda address: os.kill(os.getpid(), signal.SIGTERM)
    email = EmailFactory()

    with django_capture_on_commit_callbacks(execute=True):
        deliver_email(email.id)

    assert smtp_peer.received == []
    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.UNSENT, None)
    assert (email.claimed_until, email.attempts) == (None, 0)
    assert not EmailEvent.objects.filter(email=email).exists()
    assert queued_email_ids() == [email.id]
    # Then the signal takes its course, as it would have without the delivery.
    assert sigterm_recorder == [signal.SIGTERM]


def test_sigterm_during_data_lets_the_hand_off_finish_and_be_recorded(smtp_peer, sigterm_recorder):
    smtp_peer.handler.on_data = lambda: os.kill(os.getpid(), signal.SIGTERM)
    email = EmailFactory()

    deliver_email(email.id)

    assert len(smtp_peer.received) == 1
    email.refresh_from_db()
    assert (email.status, email.claimed_until) == (Status.ACCEPTED, None)
    assert queued_email_ids() == []
    assert sigterm_recorder == [signal.SIGTERM]


def test_a_delivery_without_sigterm_leaves_the_signal_handler_as_it_was(
    smtp_peer, sigterm_recorder
):
    before = signal.getsignal(signal.SIGTERM)

    deliver_email(EmailFactory().id)

    assert signal.getsignal(signal.SIGTERM) is before
    assert sigterm_recorder == []


def test_a_released_email_is_delivered_by_the_next_task(
    smtp_peer, sigterm_recorder, django_capture_on_commit_callbacks
):
    smtp_peer.handler.on_rcpt = lambda address: os.kill(os.getpid(), signal.SIGTERM)
    email = EmailFactory()
    with django_capture_on_commit_callbacks(execute=True):
        deliver_email(email.id)
    smtp_peer.handler.on_rcpt = None

    deliver_email(queued_email_ids()[0])

    assert len(smtp_peer.received) == 1
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.ACCEPTED, 1)
    assert email.accepted_at <= timezone.now()
