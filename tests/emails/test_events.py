"""The event service: one row per event, monotonic per-recipient status, the email follows its
primary recipient, duplicates by provider event id change nothing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from emails.models import Email, EmailEvent, EmailRecipient, Status
from emails.services.events import event_record
from tests.factories import EmailFactory

pytestmark = pytest.mark.django_db

T = EmailEvent.Type


def primary(email: Email) -> EmailRecipient:
    return email.recipients.get(kind=EmailRecipient.Kind.TO)


def cc(email: Email, address: str) -> EmailRecipient:
    return email.recipients.get(address=address)


def test_an_event_gets_its_row_and_raises_the_recipient_and_the_email():
    email = EmailFactory()
    at = timezone.now() - timedelta(seconds=3)

    event = event_record(
        email=email,
        recipient=primary(email),
        type=T.DELIVERED,
        occurred_at=at,
        provider_event_id="sns-1:x",
        detail="250 2.0.0 OK",
        payload={"eventType": "Delivery"},
    )

    assert event is not None
    row = EmailEvent.objects.get()
    assert (row.type, row.occurred_at, row.detail) == (T.DELIVERED, at, "250 2.0.0 OK")
    assert (row.recipient, row.payload) == (primary(email), {"eventType": "Delivery"})
    assert primary(email).status == Status.DELIVERED
    email.refresh_from_db()
    assert (email.status, email.delivered_at) == (Status.DELIVERED, at)
    assert email.updated_at > at


def test_a_lower_event_after_a_higher_one_records_its_row_and_timestamp_but_not_its_status():
    email = EmailFactory()
    opened_at = timezone.now() - timedelta(seconds=1)
    delivered_at = opened_at - timedelta(seconds=10)
    event_record(email=email, recipient=primary(email), type=T.OPENED, occurred_at=opened_at)

    event_record(email=email, recipient=primary(email), type=T.DELIVERED, occurred_at=delivered_at)

    assert EmailEvent.objects.filter(email=email).count() == 2
    assert primary(email).status == Status.OPENED
    email.refresh_from_db()
    assert email.status == Status.OPENED
    assert (email.opened_at, email.delivered_at) == (opened_at, delivered_at)


def test_a_duplicate_provider_event_id_returns_none_and_changes_nothing():
    email = EmailFactory()
    first_at = timezone.now() - timedelta(minutes=1)
    event_record(
        email=email,
        recipient=primary(email),
        type=T.DELIVERED,
        occurred_at=first_at,
        provider_event_id="sns-1:x",
    )

    again = event_record(
        email=email,
        recipient=primary(email),
        type=T.COMPLAINT,
        occurred_at=timezone.now(),
        provider_event_id="sns-1:x",
        error_code="abuse",
    )

    assert again is None
    assert EmailEvent.objects.count() == 1
    email.refresh_from_db()
    assert (email.status, email.error_code, email.delivered_at) == (
        Status.DELIVERED,
        None,
        first_at,
    )


def test_a_duplicate_inside_a_transaction_leaves_that_transaction_usable():
    email = EmailFactory()
    with transaction.atomic():
        for _ in range(2):
            event_record(
                email=email,
                recipient=primary(email),
                type=T.SENT,
                occurred_at=timezone.now(),
                provider_event_id="same",
            )
        # Would raise "current transaction is aborted" without the savepoint.
        assert Email.objects.filter(id=email.id).exists()


def test_opened_at_is_the_first_open_whatever_the_arrival_order():
    email = EmailFactory()
    late, early = timezone.now(), timezone.now() - timedelta(hours=1)

    for at in (late, early, late + timedelta(minutes=5)):
        event_record(email=email, recipient=primary(email), type=T.OPENED, occurred_at=at)

    email.refresh_from_db()
    assert email.opened_at == early
    assert EmailEvent.objects.filter(type=T.OPENED).count() == 3


def test_a_bounce_sets_the_error_of_the_recipient_and_the_email():
    email = EmailFactory()

    event_record(
        email=email,
        recipient=primary(email),
        type=T.BOUNCED,
        occurred_at=timezone.now(),
        error_code="Hard bounce",
        error_sub_type="NoEmail",
    )

    recipient = primary(email)
    assert (recipient.status, recipient.error_code, recipient.error_sub_type) == (
        Status.BOUNCED,
        "Hard bounce",
        "NoEmail",
    )
    email.refresh_from_db()
    assert (email.status, email.error_code, email.error_sub_type) == (
        Status.BOUNCED,
        "Hard bounce",
        "NoEmail",
    )


def test_a_complaint_after_a_bounce_raises_the_status_and_replaces_the_error():
    email = EmailFactory()
    event_record(
        email=email,
        recipient=primary(email),
        type=T.BOUNCED,
        occurred_at=timezone.now(),
        error_code="Soft bounce",
        error_sub_type="MailboxFull",
    )

    event_record(
        email=email,
        recipient=primary(email),
        type=T.COMPLAINT,
        occurred_at=timezone.now(),
        error_code="abuse",
    )

    email.refresh_from_db()
    assert (email.status, email.error_code, email.error_sub_type) == (
        Status.COMPLAINT,
        "abuse",
        None,
    )


def test_a_bounce_after_a_complaint_keeps_the_complaint():
    email = EmailFactory()
    event_record(
        email=email,
        recipient=primary(email),
        type=T.COMPLAINT,
        occurred_at=timezone.now(),
        error_code="fraud",
    )

    event_record(
        email=email,
        recipient=primary(email),
        type=T.BOUNCED,
        occurred_at=timezone.now(),
        error_code="Hard bounce",
        error_sub_type="General",
    )

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.COMPLAINT, "fraud")


def test_an_event_of_a_cc_moves_that_recipient_only():
    email = EmailFactory(cc=["carol@example.com"])

    event_record(
        email=email,
        recipient=cc(email, "carol@example.com"),
        type=T.BOUNCED,
        occurred_at=timezone.now(),
        error_code="Hard bounce",
        error_sub_type="General",
    )
    event_record(
        email=email,
        recipient=cc(email, "carol@example.com"),
        type=T.DELIVERED,
        occurred_at=timezone.now(),
    )

    assert cc(email, "carol@example.com").status == Status.BOUNCED
    assert primary(email).status == Status.UNSENT
    email.refresh_from_db()
    assert (email.status, email.error_code, email.delivered_at) == (Status.UNSENT, None, None)


def test_delayed_and_deferred_events_are_history_only():
    email = EmailFactory(status=Status.SENT)
    EmailRecipient.objects.filter(email=email).update(status=Status.SENT)

    for type in (T.DELAYED, T.DEFERRED):
        event_record(email=email, recipient=primary(email), type=type, occurred_at=timezone.now())

    assert EmailEvent.objects.count() == 2
    assert primary(email).status == Status.SENT
    assert Email.objects.get(id=email.id).status == Status.SENT


def test_a_bounce_without_an_error_code_is_refused():
    email = EmailFactory()

    with pytest.raises(ValueError, match="error_code"):
        event_record(
            email=email, recipient=primary(email), type=T.BOUNCED, occurred_at=timezone.now()
        )

    assert not EmailEvent.objects.exists()


def wait_for_a_lock_wait(timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    pytest.fail("no transaction started waiting for a row lock")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_events_never_lower_the_status():
    """A lower event that runs while a higher one holds the row still cannot lower it.

    The OPENED transaction updates the rows and waits; the DELIVERED one blocks on the row lock,
    and once OPENED commits, PostgreSQL re-checks its WHERE against the new row. A Python
    read-modify-write would have read UNSENT before the commit and written DELIVERED after it.
    """
    email = EmailFactory()
    recipient = primary(email)
    opened_written = threading.Event()
    release_opened = threading.Event()
    errors: list[BaseException] = []

    def record(type: str, before_commit: threading.Event | None = None) -> None:
        try:
            with transaction.atomic():
                event_record(
                    email=email, recipient=recipient, type=type, occurred_at=timezone.now()
                )
                if before_commit is not None:
                    opened_written.set()
                    before_commit.wait(10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    opener = threading.Thread(target=record, args=(T.OPENED, release_opened))
    opener.start()
    assert opened_written.wait(10)
    late = threading.Thread(target=record, args=(T.DELIVERED,))
    late.start()
    wait_for_a_lock_wait()
    release_opened.set()
    opener.join(10)
    late.join(10)

    assert errors == []
    assert primary(email).status == Status.OPENED
    email.refresh_from_db()
    assert email.status == Status.OPENED
    assert email.delivered_at is not None
    assert EmailEvent.objects.filter(email=email).count() == 2
