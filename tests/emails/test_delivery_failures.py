"""Delivery failures: bounces, retries with backoff, the retry window and the sweeper."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from emails.models import BlacklistEntry, Email, EmailEvent, EmailRecipient, Status
from emails.services.delivery import (
    UNCLAIMED_GRACE_SECONDS,
    emails_claim,
    emails_requeue_stale,
    retry_delay,
)
from emails.services.events import event_record
from emails.tasks import deliver_email, requeue_stale
from tests.factories import EmailAttachmentFactory, EmailFactory
from tests.queue import queued_email_ids

SEND = "/v1/transactional/email/send"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queue")]


def pytest_generate_tests(metafunc):
    """Every failure the relay takes part in is tried against a relay that offers PIPELINING and
    one that does not; the tests without a relay run once."""
    if "smtp_peer" in metafunc.fixturenames:
        metafunc.parametrize(
            "relay_pipelining", ["pipelined", "one command at a time"], indirect=True
        )


@pytest.fixture(autouse=True)
def relay_pipelining(request):
    if hasattr(request, "param"):
        request.getfixturevalue("smtp_peer").handler.pipelining = request.param == "pipelined"


def recipient(email: Email, address: str) -> EmailRecipient:
    return EmailRecipient.objects.get(email=email, address=address)


def test_5xx_for_the_primary_recipient_is_a_hard_bounce_and_blacklists_it(smtp_peer):
    smtp_peer.refuse_rcpt("gone@example.com", "550 5.1.1 No such user")
    email = EmailFactory(recipient="gone@example.com")

    deliver_email(email.id)

    assert smtp_peer.received == []
    email.refresh_from_db()
    assert email.status == Status.BOUNCED
    assert email.error_code == "Hard bounce"
    assert email.error_sub_type == "550 5.1.1 No such user"
    assert email.claimed_until is None
    assert recipient(email, "gone@example.com").status == Status.BOUNCED
    entry = BlacklistEntry.objects.get(address="gone@example.com")
    assert entry.source == BlacklistEntry.Source.HARD_BOUNCE


def test_5xx_for_a_cc_marks_only_that_recipient(smtp_peer):
    smtp_peer.refuse_rcpt("gone@example.com", "550 5.1.1 No such user")
    email = EmailFactory(
        recipient="alice@example.com", cc=["gone@example.com", "carol@example.com"]
    )

    deliver_email(email.id)

    [received] = smtp_peer.received
    assert sorted(received.rcpt_tos) == ["alice@example.com", "carol@example.com"]
    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.ACCEPTED, None)
    gone = recipient(email, "gone@example.com")
    assert (gone.status, gone.error_code) == (Status.BOUNCED, "Hard bounce")
    assert gone.error_sub_type == "550 5.1.1 No such user"
    assert recipient(email, "carol@example.com").status == Status.ACCEPTED
    assert BlacklistEntry.objects.filter(address="gone@example.com").exists()


def test_4xx_for_a_cc_when_the_primary_is_accepted_is_a_soft_bounce_of_the_cc(smtp_peer):
    smtp_peer.refuse_rcpt("busy@example.com", "451 4.3.0 Try again later")
    email = EmailFactory(bcc=["busy@example.com"])

    deliver_email(email.id)

    email.refresh_from_db()
    assert email.status == Status.ACCEPTED
    busy = recipient(email, "busy@example.com")
    assert (busy.status, busy.error_code) == (Status.BOUNCED, "Soft bounce")
    assert not BlacklistEntry.objects.exists()


def test_5xx_to_data_bounces_the_email_without_blacklisting_anyone(smtp_peer):
    smtp_peer.handler.data_reply = "554 5.6.0 Message rejected"
    email = EmailFactory(cc=["carol@example.com"])

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.BOUNCED, "Hard bounce")
    assert email.error_sub_type == "554 5.6.0 Message rejected"
    assert set(email.recipients.values_list("status", flat=True)) == {Status.BOUNCED}
    assert not BlacklistEntry.objects.exists()


@pytest.mark.parametrize("reused", [False, True])
def test_a_connection_the_relay_closes_at_mail_from_defers_the_email(smtp_peer, reused):
    """A new connection closed at MAIL FROM, or a reused one closed again after its one retry
    on a new connection: nothing was sent, so the email waits for a retry, never bounces."""
    if reused:
        deliver_email(EmailFactory().id)
    smtp_peer.handler.drop_at_mail = 2 if reused else 1
    email = EmailFactory()

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.UNSENT, None)
    assert email.last_smtp_response.startswith("Connection closed by the relay")
    assert email.claimed_until > timezone.now()
    assert smtp_peer.handler.drop_at_mail == 0


def test_4xx_to_data_schedules_a_retry_without_bouncing_or_blacklisting(smtp_peer):
    smtp_peer.handler.data_reply = "451 4.3.0 Try again later"
    email = EmailFactory()

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.UNSENT, None)
    assert email.last_smtp_response == "451 4.3.0 Try again later"
    assert email.claimed_until > timezone.now()
    assert not BlacklistEntry.objects.exists()


def test_5xx_to_mail_from_bounces_the_email_without_blacklisting_anyone(smtp_peer):
    smtp_peer.handler.mail_reply = "550 5.7.1 Sender rejected"
    email = EmailFactory()

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.BOUNCED, "Hard bounce")
    assert email.error_sub_type == "550 5.7.1 Sender rejected"
    assert smtp_peer.received == []
    assert not BlacklistEntry.objects.exists()


def test_a_relay_login_that_fails_is_retried_not_bounced(smtp_peer, settings):
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "user", "secret"
    email = EmailFactory()

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.UNSENT, None)
    # The peer offers no AUTH: what an operator sees is why the login failed.
    assert email.last_smtp_response.startswith("SMTPNotSupportedError")
    assert email.claimed_until > timezone.now()


def test_4xx_for_the_primary_schedules_a_retry_and_keeps_the_email_unsent(smtp_peer):
    smtp_peer.refuse_rcpt("busy@example.com", "451 4.3.0 Try again later")
    email = EmailFactory(recipient="busy@example.com")
    before = timezone.now()

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.UNSENT, None)
    assert email.last_smtp_response == "451 4.3.0 Try again later"
    # First retry after 30-60 s (a 60 s backoff with jitter); nobody can claim it before.
    assert before + timedelta(seconds=30) <= email.claimed_until
    assert email.claimed_until <= timezone.now() + timedelta(seconds=60)
    assert recipient(email, "busy@example.com").status == Status.UNSENT


def test_a_relay_that_is_down_schedules_a_retry_with_the_connection_error(smtp_peer):
    smtp_peer.stop()
    email = EmailFactory()

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.UNSENT, None)
    assert "ConnectionRefusedError" in email.last_smtp_response
    assert email.claimed_until > timezone.now()


def test_a_retried_email_is_sent_once_the_retry_time_has_come(smtp_peer):
    smtp_peer.handler.mail_reply = "421 4.3.2 Service shutting down"
    email = EmailFactory()
    deliver_email(email.id)
    smtp_peer.handler.mail_reply = None
    retry_at = Email.objects.get(id=email.id).claimed_until

    deliver_email(email.id)  # too early: the retry time is the lease
    assert smtp_peer.received == []

    with time_machine.travel(retry_at + timedelta(seconds=1), tick=False):
        assert requeue_stale() == 1
        assert queued_email_ids() == [email.id]
        deliver_email(email.id)

    assert len(smtp_peer.received) == 1
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.ACCEPTED, 2)


def test_a_retry_goes_only_to_the_recipients_still_pending(smtp_peer):
    smtp_peer.refuse_rcpt("alice@example.com", "452 4.2.2 Mailbox full")
    email = EmailFactory(recipient="alice@example.com", cc=["carol@example.com"])
    deliver_email(email.id)
    assert recipient(email, "carol@example.com").status == Status.ACCEPTED
    smtp_peer.handler.rcpt_replies.clear()

    with time_machine.travel(Email.objects.get(id=email.id).claimed_until + timedelta(seconds=1)):
        deliver_email(email.id)

    first, second = smtp_peer.received
    assert first.rcpt_tos == ["carol@example.com"]
    assert second.rcpt_tos == ["alice@example.com"]
    assert second.message["Message-ID"] == first.message["Message-ID"]
    assert Email.objects.get(id=email.id).status == Status.ACCEPTED


def test_after_the_retry_window_a_transient_failure_is_a_soft_bounce(smtp_peer, settings):
    settings.DELIVERY_RETRY_SECONDS = 24 * 60 * 60
    smtp_peer.refuse_rcpt("busy@example.com", "451 4.3.0 Try again later")
    email = EmailFactory(recipient="busy@example.com")
    deliver_email(email.id)

    with time_machine.travel(email.created_at + timedelta(hours=24, seconds=1), tick=False):
        deliver_email(email.id)

    email.refresh_from_db()
    assert email.status == Status.BOUNCED
    assert email.error_code == "Soft bounce"
    assert email.error_sub_type == "451 4.3.0 Try again later"
    assert recipient(email, "busy@example.com").error_code == "Soft bounce"
    assert not BlacklistEntry.objects.exists()


def test_the_last_retry_is_scheduled_at_the_end_of_the_window(smtp_peer, settings):
    settings.DELIVERY_RETRY_SECONDS = 600
    smtp_peer.stop()
    email = EmailFactory()

    with time_machine.travel(email.created_at + timedelta(seconds=590), tick=False):
        deliver_email(email.id)

    email.refresh_from_db()
    assert email.claimed_until == email.created_at + timedelta(seconds=600)
    assert email.status == Status.UNSENT


def test_an_email_whose_workers_keep_dying_soft_bounces_after_the_window(smtp_peer, settings):
    settings.DELIVERY_RETRY_SECONDS = 600
    email = EmailFactory(attempts=5, last_smtp_response="TimeoutError: timed out")
    expired = email.created_at + timedelta(seconds=600 + settings.DELIVERY_LEASE_SECONDS + 1)
    Email.objects.filter(id=email.id).update(claimed_until=expired - timedelta(seconds=1))

    with time_machine.travel(expired, tick=False):
        deliver_email(email.id)

    assert smtp_peer.received == []
    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.BOUNCED, "Soft bounce")
    assert email.error_sub_type == "TimeoutError: timed out"


def test_an_email_never_tried_is_tried_once_even_after_the_window(smtp_peer, settings):
    settings.DELIVERY_RETRY_SECONDS = 600
    email = EmailFactory()

    with time_machine.travel(email.created_at + timedelta(days=2), tick=False):
        deliver_email(email.id)

    assert len(smtp_peer.received) == 1
    assert Email.objects.get(id=email.id).status == Status.ACCEPTED


def test_retry_delay_grows_exponentially_with_jitter_up_to_an_hour():
    for attempt, full in [(1, 60), (2, 120), (3, 240), (7, 3600), (30, 3600)]:
        delays = [retry_delay(attempt=attempt).total_seconds() for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(set(delays)) > 1


def test_status_never_moves_backwards_when_acceptance_is_recorded_late():
    delivered_at = timezone.now() - timedelta(seconds=5)
    email = EmailFactory(status=Status.DELIVERED, delivered_at=delivered_at)
    at = timezone.now()

    event_record(
        email=email,
        recipient=email.recipients.get(kind="to"),
        type=EmailEvent.Type.ACCEPTED,
        occurred_at=at,
        detail="250 Ok",
    )

    email.refresh_from_db()
    assert email.status == Status.DELIVERED
    assert email.accepted_at == at


def test_the_sweeper_requeues_expired_leases_and_emails_nobody_claimed():
    now = timezone.now()
    expired = EmailFactory(claimed_until=now - timedelta(seconds=1), attempts=1)
    lost = EmailFactory(created_at=now - timedelta(seconds=61))
    EmailFactory(claimed_until=now + timedelta(minutes=4), attempts=1)  # being delivered
    EmailFactory(created_at=now - timedelta(seconds=10))  # its task is on its way
    EmailFactory(created_at=now - timedelta(hours=1), status=Status.ACCEPTED)
    EmailFactory(created_at=now - timedelta(hours=1), error_code="Error 400: Blacklisted recipient")

    count = emails_requeue_stale(now=now)

    assert count == 2
    # One task per batch of due emails, named after the oldest; its claim takes both.
    assert queued_email_ids() == [lost.id]
    assert {expired.id, lost.id} <= {e.id for e in emails_claim(now=now, limit=25)}


def test_the_sweeper_queues_one_task_per_batch_of_due_emails(settings):
    settings.DELIVERY_BATCH_SIZE = 2
    now = timezone.now()
    due = [EmailFactory(created_at=now - timedelta(seconds=70 - i)) for i in range(5)]

    assert emails_requeue_stale(now=now) == 5
    assert queued_email_ids() == [due[0].id, due[2].id, due[4].id]


def test_a_requeued_email_with_an_expired_lease_is_delivered_by_the_next_worker(smtp_peer):
    email = EmailFactory(claimed_until=timezone.now() - timedelta(seconds=1), attempts=1)

    requeue_stale()
    [email_id] = queued_email_ids()
    deliver_email(email_id)

    assert len(smtp_peer.received) == 1
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.ACCEPTED, 2)


def test_a_header_with_a_line_break_is_never_sent(smtp_peer):
    email = EmailFactory(subject="Hello\r\nBcc: victim@example.com")

    deliver_email(email.id)

    assert smtp_peer.received == []
    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.BOUNCED, "Hard bounce")
    assert email.error_sub_type.startswith("Invalid message header")
    assert not BlacklistEntry.objects.exists()


def test_a_missing_attachment_file_is_retried_like_a_relay_failure(smtp_peer, media_root):
    email = EmailFactory(sender="HDB <notify@hdb.gov.sg>")
    attachment = EmailAttachmentFactory(email=email)
    attachment.file.storage.delete(attachment.file.name)

    deliver_email(email.id)

    assert smtp_peer.received == []
    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.UNSENT, None)
    assert email.last_smtp_response.startswith("Build failed:")
    assert email.claimed_until > timezone.now()


# Autocommit, as in production: the send's email is committed before its task is queued.
@pytest.mark.django_db(transaction=True)
def test_a_send_whose_task_cannot_be_queued_keeps_its_email_for_the_sweeper(api, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionError("the queue is out of reach")

    monkeypatch.setattr("emails.queue.async_task", broker_down)
    api.client.raise_request_exception = False
    response = api.client.post(
        SEND, {"recipient": "citizen@example.com", "subject": "Hi", "body": "<p>Hi</p>"}
    )
    monkeypatch.undo()

    assert response.status_code == 500
    assert response.json()["code"] == "internal_server"
    email = Email.objects.get()
    assert (email.status, email.error_code, email.claimed_until) == (Status.UNSENT, None, None)
    assert queued_email_ids() == []
    later = email.created_at + timedelta(seconds=UNCLAIMED_GRACE_SECONDS + 1)
    assert emails_requeue_stale(now=later) == 1
    assert queued_email_ids() == [email.id]
