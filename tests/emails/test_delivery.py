"""Delivery: the enqueue, the claim, the MIME message and a successful hand-off to the relay."""

from __future__ import annotations

import re
import smtplib
from datetime import timedelta

import pytest
from django import db
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.models import Schedule

from emails.delivery import smtp
from emails.delivery.mime import make_message_id
from emails.models import Email, EmailRecipient, Status
from emails.queue import OrmEnqueueBroker, task_broker
from emails.services.delivery import email_enqueue, emails_claim
from emails.tasks import deliver_email
from tests.factories import EmailAttachmentFactory, EmailFactory, oldest_first
from tests.queue import queued_email_ids

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queue")]


def test_enqueue_queues_the_email_id_only_when_the_transaction_commits(
    django_capture_on_commit_callbacks,
):
    email = EmailFactory()

    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        email_enqueue(email=email)
        assert queued_email_ids() == []

    assert len(callbacks) == 1
    assert queued_email_ids() == [email.id]


def test_enqueue_queues_nothing_when_the_transaction_rolls_back(
    django_capture_on_commit_callbacks,
):
    email = EmailFactory()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        email_enqueue(email=email)
        raise RuntimeError("request failed")

    assert callbacks == []
    assert queued_email_ids() == []


def test_it_sends_headers_and_keeps_bcc_in_the_envelope_only(smtp_peer):
    email = EmailFactory(
        sender="Housing Board <notify@hdb.gov.sg>",
        recipient="alice@example.com",
        reply_to="help@hdb.gov.sg",
        cc=["carol@example.com"],
        bcc=["bob@example.com"],
        subject="Your appointment",
    )

    deliver_email(email.id)

    [received] = smtp_peer.received
    assert received.mail_from == "notify@hdb.gov.sg"
    assert sorted(received.rcpt_tos) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    message = received.message
    assert message["From"] == "Housing Board <notify@hdb.gov.sg>"
    assert message["To"] == "alice@example.com"
    assert message["Cc"] == "carol@example.com"
    assert message["Reply-To"] == "help@hdb.gov.sg"
    assert message["Subject"] == "Your appointment"
    assert message["X-Postman-Email-Id"] == str(email.id)
    assert message["Bcc"] is None
    assert b"bob@example.com" not in received.raw
    assert message["Message-ID"] == make_message_id(email.id)
    assert message["Message-ID"].startswith(f"<{email.id}.")
    assert message["Message-ID"].endswith("@mail.postman.gov.sg>")
    email.refresh_from_db()
    assert email.message_id == message["Message-ID"]


def test_it_omits_reply_to_when_the_email_has_none(smtp_peer):
    email = EmailFactory(reply_to="")

    deliver_email(email.id)

    assert smtp_peer.received[0].message["Reply-To"] is None


def test_message_id_is_deterministic_per_email_and_unguessable():
    assert make_message_id(42) == make_message_id(42)
    assert make_message_id(42) != make_message_id(43)
    # The id, then 16 hex digits of a MAC, under the service's domain.
    assert re.fullmatch(r"<42\.[0-9a-f]{16}@[^>]+>", make_message_id(42))


def test_message_id_changes_with_the_secret_key(settings):
    before = make_message_id(42)
    settings.SECRET_KEY = "another-secret-key"

    assert make_message_id(42) != before


def test_html_part_is_the_sanitised_html_with_a_text_alternative(smtp_peer):
    html = '<p>Your OTP is <b>123456</b>.</p><p>See <a href="https://go.gov.sg/x">the guide</a></p>'
    email = EmailFactory(
        html=html,
        params={"subject": "OTP", "body": "<script>x</script>" + html},
        disable_tracking=True,
    )

    deliver_email(email.id)

    message = smtp_peer.received[0].message
    assert message.get_content_type() == "multipart/alternative"
    text, rich = message.get_payload()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n") == (
        "Your OTP is 123456.\n\nSee the guide (https://go.gov.sg/x)"
    )
    assert rich.get_content_type() == "text/html"
    assert rich.get_content() == html


def test_it_attaches_files_with_safe_names_and_inline_parts_with_content_id(smtp_peer, media_root):
    email = EmailFactory(sender="HDB <notify@hdb.gov.sg>", html='<p><img src="cid:1"></p>')
    EmailAttachmentFactory(
        email=email,
        position=0,
        filename="report\r\nBcc: x@evil.test.pdf",
        content_type="application/pdf",
        content=b"%PDF-1.4 fake",
    )
    EmailAttachmentFactory(
        email=email, position=1, filename="logo.png", content_type="image/png", inline=True,
        content=b"\x89PNG\r\n\x1a\nfake",
    )  # fmt: skip

    deliver_email(email.id)

    message = smtp_peer.received[0].message
    assert message.get_content_type() == "multipart/mixed"
    related, attachment = message.get_payload()
    assert attachment.get_filename() == "reportBcc: x@evil.test.pdf"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.4 fake"
    assert message["Bcc"] is None
    assert related.get_content_type() == "multipart/related"
    alternative, image = related.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    assert image["Content-ID"] == "<1>"
    assert image.get_content_disposition() == "inline"
    assert image.get_filename() == "logo.png"
    assert image.get_content() == b"\x89PNG\r\n\x1a\nfake"


def test_it_marks_the_email_and_its_recipients_accepted(smtp_peer):
    email = EmailFactory(cc=["carol@example.com"], bcc=["bob@example.com"])
    before = timezone.now()

    deliver_email(email.id)

    email.refresh_from_db()
    assert email.status == Status.ACCEPTED
    assert email.error_code is None
    assert before <= email.accepted_at <= timezone.now()
    assert email.claimed_until is None
    assert email.attempts == 1
    assert email.last_smtp_response == "250 Ok queued as peer-1"
    assert set(email.recipients.values_list("status", flat=True)) == {Status.ACCEPTED}


def test_a_second_task_for_the_same_email_does_nothing(smtp_peer):
    email = EmailFactory()

    deliver_email(email.id)
    deliver_email(email.id)

    assert len(smtp_peer.received) == 1
    email.refresh_from_db()
    assert email.attempts == 1


def test_an_email_claimed_by_another_worker_is_left_alone(smtp_peer):
    lease = timezone.now() + timedelta(minutes=4)
    email = EmailFactory(claimed_until=lease, attempts=1)

    deliver_email(email.id)

    assert smtp_peer.received == []
    email.refresh_from_db()
    assert (email.status, email.attempts, email.claimed_until) == (Status.UNSENT, 1, lease)


def test_an_email_that_failed_before_hand_off_is_never_sent(smtp_peer):
    email = EmailFactory(error_code="Error 400: Blacklisted recipient")

    deliver_email(email.id)

    assert smtp_peer.received == []
    assert Email.objects.get(id=email.id).status == Status.UNSENT


def test_blacklisted_cc_is_neither_sent_to_nor_named_in_the_header(smtp_peer):
    email = EmailFactory(cc=["carol@example.com", "blocked@example.com"])
    EmailRecipient.objects.filter(email=email, address="blocked@example.com").update(
        error_code="Error 400: Blacklisted recipient"
    )

    deliver_email(email.id)

    [received] = smtp_peer.received
    assert "blocked@example.com" not in received.rcpt_tos
    assert received.message["Cc"] == "carol@example.com"
    blocked = EmailRecipient.objects.get(email=email, address="blocked@example.com")
    assert blocked.status == Status.UNSENT


def test_it_reuses_one_relay_connection_for_several_emails(smtp_peer):
    first, second = EmailFactory(), EmailFactory()

    deliver_email(first.id)
    deliver_email(second.id)

    assert len(smtp_peer.received) == 2
    assert smtp_peer.connections == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one command at a time"])
def test_commands_are_pipelined_when_the_relay_offers_it(smtp_peer, pipelining):
    smtp_peer.handler.pipelining = pipelining
    smtp_peer.handler.rcpt_replies["nobody@example.com"] = "550 5.1.1 No such user"
    first = EmailFactory(cc=["officer@example.com", "nobody@example.com"])
    second = EmailFactory(html="<p>Line one</p>\n.a line that starts with a dot\n.\n<p>end</p>")

    deliver_email(first.id)
    deliver_email(second.id)

    assert smtp_peer.handler.commands_in_one_read == (2 if pipelining else 0)
    assert [r.rcpt_tos for r in smtp_peer.received] == [
        [first.recipient, "officer@example.com"],
        [second.recipient],
    ]
    assert recipient_status(first, "nobody@example.com") == Status.BOUNCED
    # Dot-stuffed on the wire, and whole again at the relay.
    html = smtp_peer.received[1].message.get_body(preferencelist=("html",)).get_content()
    assert html.startswith("<p>Line one</p>\r\n.a line that starts with a dot\r\n.\r\n<p>end</p>")
    assert Email.objects.get(id=second.id).status == Status.ACCEPTED


def test_it_reconnects_when_the_relay_dropped_the_connection(smtp_peer):
    first = EmailFactory()
    deliver_email(first.id)
    smtp_peer.stop()
    smtp_peer.start()  # same port, the old connection is gone
    second = EmailFactory()

    # Used a moment ago, so reused without a NOOP: MAIL FROM finds it closed, and the email goes
    # out on a new connection instead of being deferred.
    deliver_email(second.id)

    assert [r.message["X-Postman-Email-Id"] for r in smtp_peer.received] == [
        str(first.id),
        str(second.id),
    ]
    assert smtp_peer.connections == 1
    assert Email.objects.get(id=second.id).status == Status.ACCEPTED


def recipient_status(email: Email, address: str) -> str:
    return EmailRecipient.objects.get(email=email, address=address).status


def test_a_test_mode_email_is_never_handed_to_the_relay(smtp_peer):
    email = EmailFactory(mode="test")

    deliver_email(email.id)

    assert smtp_peer.received == []
    assert smtp_peer.connections == 0
    email.refresh_from_db()
    assert email.status == Status.DELIVERED


def test_a_test_mode_email_to_the_bounce_simulator_bounces(smtp_peer):
    email = EmailFactory(mode="test", recipient="bounce@simulator.postman.test")

    deliver_email(email.id)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.BOUNCED, "Hard bounce")
    assert smtp_peer.received == []


def test_the_sweeper_is_scheduled_every_minute():
    schedule = Schedule.objects.get(name="emails.requeue_stale")

    assert schedule.func == "emails.tasks.requeue_stale"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)


def test_the_broker_is_redis_exactly_when_redis_url_is_set(settings):
    # CI runs the delivery tests twice: without REDIS_URL (ORM broker) and with it.
    broker = get_broker()

    assert isinstance(broker, Redis if settings.REDIS_URL else ORM)


@pytest.mark.skipif(bool(settings.REDIS_URL), reason="the ORM broker's enqueue")
@pytest.mark.django_db(transaction=True)
def test_the_orm_enqueue_keeps_the_connection_it_was_given(monkeypatch):
    # Outside a transaction, django-q2's ORM broker calls close_old_connections() before each
    # insert, which makes the next query check the connection again (a second round trip).
    broker, stock = task_broker(), ORM(list_key=task_broker().list_key)
    closed = []
    monkeypatch.setattr(db, "close_old_connections", lambda **kwargs: closed.append(True))
    email = EmailFactory()

    email_enqueue(email=email)

    assert isinstance(broker, OrmEnqueueBroker)
    assert closed == []
    assert queued_email_ids() == [email.id]
    stock.enqueue("a package")
    assert closed


def test_one_task_delivers_batches_of_the_oldest_due_emails_over_one_connection(
    smtp_peer, settings
):
    settings.DELIVERY_BATCH_SIZE = 3
    now = timezone.now()
    emails = oldest_first(4)
    waiting = EmailFactory(claimed_until=now + timedelta(minutes=3), attempts=1)  # a retry

    deliver_email(emails[3].id)

    # A full batch of the three oldest, then the next batch, which is not full: the task ends.
    delivered = [int(r.message["X-Postman-Email-Id"]) for r in smtp_peer.received]
    assert delivered == [email.id for email in emails]
    assert smtp_peer.connections == 1
    assert Email.objects.get(id=waiting.id).status == Status.UNSENT
    for email, received in zip(emails, smtp_peer.received, strict=True):
        email.refresh_from_db()
        assert email.status == Status.ACCEPTED
        assert email.message_id == make_message_id(email.id) == received.message["Message-ID"]
        assert (email.attempts, email.claimed_until) == (1, None)
        assert email.last_smtp_response == f"250 Ok queued as peer-{emails.index(email) + 1}"
        assert email.accepted_at is not None
        assert email.events.get().type == "accepted"
    # The full batch queued a task for another worker process; it finds nothing left.
    assert queued_email_ids() == [None]


def test_successive_claims_never_take_the_same_email():
    now = timezone.now()
    ids = {EmailFactory().id for _ in range(5)}

    first = emails_claim(now=now, limit=3)
    second = emails_claim(now=now, limit=3)
    third = emails_claim(now=now, limit=3)

    assert len(first) == 3 and len(second) == 2 and third == []
    assert {e.id for e in first} | {e.id for e in second} == ids
    assert all(e.attempts == 1 and e.claimed_until > now for e in [*first, *second])


def test_a_claim_leaves_the_request_parameters_deferred_and_reads_the_rest(
    django_assert_num_queries,
):
    created = EmailFactory(cc=["a@example.com"])
    others = [f for f in Email._meta.concrete_fields if f.name != "params"]

    with django_assert_num_queries(1):
        [email] = emails_claim(now=timezone.now(), limit=1)
        fields = {f.name: getattr(email, f.attname) for f in others}

    assert email.get_deferred_fields() == {"params"}
    assert (fields["cc"], fields["html"]) == (["a@example.com"], created.html)
    with django_assert_num_queries(1):
        assert email.params == created.params  # still there when asked for


def test_a_busy_connection_is_reused_without_noop_and_an_idle_one_is_checked(
    smtp_peer, monkeypatch
):
    deliver_email(EmailFactory().id)
    deliver_email(EmailFactory().id)
    assert (smtp_peer.connections, smtp_peer.handler.noops) == (1, 0)

    monkeypatch.setattr("emails.delivery.smtp.IDLE_CHECK_SECONDS", 0)
    deliver_email(EmailFactory().id)
    assert (smtp_peer.connections, smtp_peer.handler.noops) == (1, 1)

    old = smtp.get_connection()
    smtp_peer.stop()
    smtp_peer.start()  # the idle connection is dead: NOOP fails and a new one is opened
    assert smtp.get_connection() is not old
    email = EmailFactory()
    deliver_email(email.id)

    assert Email.objects.get(id=email.id).status == Status.ACCEPTED
    assert smtp_peer.connections == 1


@pytest.mark.parametrize(
    "address",
    [
        "citizen@example.com",
        "first.last+tag@mail.example.gov.sg",
        "a_b-c@localhost",
        '"quoted local"@example.com',
        "Name <citizen@example.com>",
        "ünïcode@example.com",
        "a..b@example.com",
        ".leading@example.com",
        "",
    ],
)
def test_addresses_are_quoted_as_smtplib_quotes_them(address):
    assert smtp._quote(address) == smtplib.quoteaddr(address)
