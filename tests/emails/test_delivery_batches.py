"""Batches: one task claims several due emails, hands them off over one connection and records
the acceptances together; a batch stops early, releasing what it did not try."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from emails.models import Email, EmailEvent, EmailRecipient, Status
from emails.services import delivery
from emails.services.delivery import _claim_sql, emails_claim, emails_release
from emails.services.events import Acceptance, events_record_accepted, provider_message_ids_set
from emails.tasks import deliver_email
from tests.factories import EmailFactory, oldest_first
from tests.queue import queued_email_ids

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queue")]


def test_a_relay_failure_defers_that_email_and_releases_the_rest_untried(
    smtp_peer, django_capture_on_commit_callbacks
):
    first, second, third = oldest_first(3)
    smtp_peer.stop()

    with django_capture_on_commit_callbacks(execute=True):
        deliver_email(third.id)

    first.refresh_from_db()
    assert first.attempts == 1
    assert "ConnectionRefusedError" in first.last_smtp_response
    assert first.claimed_until > timezone.now()  # its retry time
    for email in (second, third):
        email.refresh_from_db()
        assert (email.status, email.attempts, email.claimed_until) == (Status.UNSENT, 0, None)
        assert not email.events.exists()
    # One task for the released emails, not one each: a failing relay must not multiply tasks.
    assert queued_email_ids() == [second.id]

    smtp_peer.start()
    deliver_email(second.id)

    assert [int(r.message["X-Postman-Email-Id"]) for r in smtp_peer.received] == [
        second.id,
        third.id,
    ]


def test_a_relay_failure_also_ends_the_task_after_a_full_batch(smtp_peer, settings):
    # A full batch would have the task claim the next one; not after the relay failed.
    settings.DELIVERY_BATCH_SIZE = 1
    first, second = oldest_first(2)
    smtp_peer.stop()

    deliver_email(first.id)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.attempts == 1
    assert (second.attempts, second.claimed_until) == (0, None)


def test_sigterm_mid_batch_finishes_the_email_in_hand_and_releases_the_rest(
    smtp_peer, django_capture_on_commit_callbacks
):
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    first, second = oldest_first(2)
    smtp_peer.handler.on_data = lambda: os.kill(os.getpid(), signal.SIGTERM)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            deliver_email(first.id)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert [int(r.message["X-Postman-Email-Id"]) for r in smtp_peer.received] == [first.id]
    assert Email.objects.get(id=first.id).status == Status.ACCEPTED
    second.refresh_from_db()
    assert (second.status, second.attempts, second.claimed_until) == (Status.UNSENT, 0, None)
    assert queued_email_ids() == [second.id]
    assert received == [signal.SIGTERM]


def test_sigterm_during_a_full_batch_ends_the_task_before_the_next_claim(
    smtp_peer, settings, monkeypatch
):
    settings.DELIVERY_BATCH_SIZE = 1
    claims = []
    monkeypatch.setattr(
        delivery, "emails_claim", lambda **kwargs: claims.append(1) or emails_claim(**kwargs)
    )
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    first, second = oldest_first(2)
    smtp_peer.handler.on_data = lambda: os.kill(os.getpid(), signal.SIGTERM)
    try:
        deliver_email(first.id)
    finally:
        signal.signal(signal.SIGTERM, previous)

    # The batch (one email, a full one) was handed off whole; the task claims no other.
    assert [int(r.message["X-Postman-Email-Id"]) for r in smtp_peer.received] == [first.id]
    assert claims == [1]
    second.refresh_from_db()
    assert (second.attempts, second.claimed_until) == (0, None)


def test_a_refused_cc_in_a_batch_is_recorded_on_its_own_and_the_batch_goes_on(smtp_peer):
    now = timezone.now()
    first = EmailFactory(cc=["nobody@example.com"], created_at=now - timedelta(seconds=2))
    second = EmailFactory(created_at=now - timedelta(seconds=1))
    smtp_peer.refuse_rcpt("nobody@example.com", "550 5.1.1 No such user")

    deliver_email(first.id)

    assert len(smtp_peer.received) == 2
    statuses = dict(Email.objects.values_list("id", "status"))
    assert statuses == {first.id: Status.ACCEPTED, second.id: Status.ACCEPTED}
    refused = EmailRecipient.objects.get(email=first, address="nobody@example.com")
    assert (refused.status, refused.error_code) == (Status.BOUNCED, "Hard bounce")


def test_recording_acceptances_in_bulk_never_lowers_a_status_and_keeps_the_earliest_time():
    delivered_at = timezone.now() - timedelta(seconds=5)
    ahead = EmailFactory(status=Status.DELIVERED, delivered_at=delivered_at)
    EmailRecipient.objects.filter(email=ahead).update(status=Status.DELIVERED)
    fresh = EmailFactory()
    earlier = timezone.now() - timedelta(seconds=2)
    Email.objects.filter(id=fresh.id).update(accepted_at=earlier)
    at = timezone.now()

    events_record_accepted(
        acceptances=[
            Acceptance(email=e, recipients=list(e.recipients.all()), at=at, reply=f"250 {e.id}")
            for e in (ahead, fresh)
        ],
        email_changes={"last_smtp_response": "250 Ok"},
    )

    ahead.refresh_from_db()
    assert (ahead.status, ahead.accepted_at, ahead.last_smtp_response) == (
        Status.DELIVERED,
        at,
        "250 Ok",
    )
    assert ahead.recipients.get().status == Status.DELIVERED
    fresh.refresh_from_db()
    assert (fresh.status, fresh.accepted_at) == (Status.ACCEPTED, earlier)
    assert fresh.recipients.get().status == Status.ACCEPTED
    details = sorted(EmailEvent.objects.filter(type="accepted").values_list("detail", flat=True))
    assert details == sorted([f"250 {ahead.id}", f"250 {fresh.id}"])


def test_recording_an_acceptance_without_the_primary_recipient_is_refused():
    email = EmailFactory(cc=["carol@example.com"])
    carol = email.recipients.get(address="carol@example.com")

    with pytest.raises(ValueError, match="primary recipient"):
        events_record_accepted(
            acceptances=[Acceptance(email=email, recipients=[carol], at=timezone.now(), reply="")]
        )

    assert not EmailEvent.objects.exists()
    assert Email.objects.get(id=email.id).status == Status.UNSENT


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_a_claim_skips_the_rows_another_claim_holds_instead_of_waiting():
    """Worker A has claimed (and still holds the row locks of) the oldest emails; worker B's
    claim at the same moment takes the next ones at once, never A's."""
    emails = oldest_first(4)
    held = threading.Event()
    release = threading.Event()
    claimed: dict[str, list[int]] = {}

    def worker_a() -> None:
        try:
            with transaction.atomic():
                claimed["a"] = [e.id for e in emails_claim(now=timezone.now(), limit=2)]
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=worker_a)
    thread.start()
    try:
        assert held.wait(10)
        claimed["b"] = [e.id for e in emails_claim(now=timezone.now(), limit=4)]
    finally:
        release.set()
        thread.join(10)

    assert claimed["a"] == [emails[0].id, emails[1].id]
    assert claimed["b"] == [emails[2].id, emails[3].id]


def test_an_unexpected_error_mid_batch_records_what_went_out_and_releases_the_rest(
    smtp_peer, monkeypatch, django_capture_on_commit_callbacks
):
    first, second, third = oldest_first(3)
    Email.objects.filter(id=second.id).update(mode="test")

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("emails.services.delivery.email_simulate", broken)

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError, match="went away"),
    ):
        deliver_email(first.id)

    first.refresh_from_db()
    assert (first.status, first.claimed_until) == (Status.ACCEPTED, None)
    # The email that failed keeps its lease (its fate is unknown); the one never tried is back.
    second.refresh_from_db()
    assert (second.status, second.attempts) == (Status.UNSENT, 1)
    assert second.claimed_until > timezone.now()
    third.refresh_from_db()
    assert (third.status, third.attempts, third.claimed_until) == (Status.UNSENT, 0, None)
    assert queued_email_ids() == [third.id]


def test_a_provider_message_id_already_taken_never_fails_the_batch(smtp_peer, caplog):
    ses_id = "0100018c9a3c5b0e-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901-000000"
    smtp_peer.handler.accepted_reply = f"250 Ok {ses_id}"  # the same id for every message
    first, second = oldest_first(2)

    deliver_email(first.id)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.provider_message_id) == (Status.ACCEPTED, ses_id)
    assert (second.status, second.provider_message_id) == (Status.ACCEPTED, None)
    assert f"Email {second.id}: provider message id {ses_id} is taken" in caplog.text


def test_an_email_without_a_deliverable_primary_recipient_bounces_and_is_never_sent(smtp_peer):
    email = EmailFactory(cc=["carol@example.com"])
    EmailRecipient.objects.filter(email=email, kind="to").update(error_code="Error 400: x")

    deliver_email(email.id)

    assert smtp_peer.received == []
    email.refresh_from_db()
    assert (email.status, email.error_code, email.error_sub_type) == (
        Status.BOUNCED,
        "Hard bounce",
        "No deliverable primary recipient",
    )
    assert email.claimed_until is None


def test_a_batch_out_of_time_releases_the_rest(
    smtp_peer, settings, django_capture_on_commit_callbacks
):
    settings.WORKER_TASK_TIMEOUT = 0  # every email after the first is past the time limit
    first, second = oldest_first(2)

    with django_capture_on_commit_callbacks(execute=True):
        deliver_email(first.id)

    assert [int(r.message["X-Postman-Email-Id"]) for r in smtp_peer.received] == [first.id]
    second.refresh_from_db()
    assert (second.status, second.attempts, second.claimed_until) == (Status.UNSENT, 0, None)
    assert queued_email_ids() == [second.id]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's plan")
def test_the_claim_reads_the_pending_index_even_as_a_prepared_statements_generic_plan():
    """A worker's connection prepares the claim after five runs; PostgreSQL may then plan it once
    for any parameters, and such a plan must still find the due emails by the partial index."""
    EmailFactory.create_batch(3)
    sql = _claim_sql(connection.alias)
    numbered = sql
    for n in range(1, sql.count("%s") + 1):
        numbered = numbered.replace("%s", f"${n}", 1)

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"PREPARE claim_plan (timestamptz, int, timestamptz) AS {numbered}")
        cursor.execute("EXPLAIN EXECUTE claim_plan (now(), 25, now())")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE claim_plan")

    assert "using email_pending on" in plan, plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner settings")
def test_a_claim_takes_no_more_than_its_limit_whatever_plan_runs_it():
    """With a nested loop that re-runs the picking for each row, a claim written as
    ``IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`` skipped the rows it had just locked and
    took the next ones too."""
    emails = oldest_first(4)
    with connection.cursor() as cursor:
        for setting in ("hashjoin", "mergejoin", "hashagg", "sort", "material"):
            cursor.execute(f"SET LOCAL enable_{setting} = off")

    claimed = emails_claim(now=timezone.now(), limit=2)

    assert [e.id for e in claimed] == [emails[0].id, emails[1].id]
    assert Email.objects.filter(attempts=1).count() == 2


def test_a_release_leaves_an_email_whose_lease_is_no_longer_the_batchs(
    django_capture_on_commit_callbacks,
):
    """Another claim took the email after this batch's lease ran out: the stale batch must not
    clear the new lease, nor count its attempt back, nor queue a task for it."""
    EmailFactory()
    [email] = emails_claim(now=timezone.now(), limit=1)
    later = email.claimed_until + timedelta(minutes=10)
    Email.objects.filter(id=email.id).update(claimed_until=later, attempts=2)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        emails_release(emails=[email])

    assert callbacks == []
    assert Email.objects.filter(id=email.id, claimed_until=later, attempts=2).exists()
    assert queued_email_ids() == []


def test_a_provider_message_id_longer_than_the_column_is_cut_to_fit():
    email = EmailFactory()

    provider_message_ids_set({email.id: "x" * 300})

    assert Email.objects.get(id=email.id).provider_message_id == "x" * 255
