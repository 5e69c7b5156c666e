"""Wake-ups: a delivery task is queued only when none is waiting to start, and a full batch
queues its successor. CI runs this file with each broker: the marker that a task waits is a
Redis key, or a ``PendingTask`` row with the ORM broker."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from emails.models import PendingTask, Status
from emails.queue import PENDING_SECONDS, enqueue_unless_pending, task_broker, task_started
from emails.services.delivery import DELIVER_TASK, email_enqueue
from emails.tasks import deliver_email
from tests.factories import EmailFactory, oldest_first
from tests.queue import pending_seconds, queued_email_ids

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queue")]

# The broker is Redis exactly when REDIS_URL is set (test_delivery.py).
on_orm = pytest.mark.skipif(bool(settings.REDIS_URL), reason="the marker is a database row")


def broker_down(*args, **kwargs):
    raise redis.ConnectionError("the queue is out of reach")


# As in production, where a send queues its task after the commit and a task runs outside any
# transaction: a failed statement there aborts nothing else.
autocommit = pytest.mark.django_db(transaction=True)


@contextmanager
def marker_store_down():
    """The marker's store fails as it does out of reach: the Redis commands that set and delete
    the key, or every statement on the ``PendingTask`` table (the queue itself still works)."""
    if settings.REDIS_URL:
        commands = task_broker().connection
        timeout = redis.TimeoutError("no answer")
        with (
            mock.patch.object(commands, "set", side_effect=timeout),
            mock.patch.object(commands, "delete", side_effect=timeout),
        ):
            yield
        return

    def fail_on_marker(execute, sql, params, many, context):
        if PendingTask._meta.db_table in sql:
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_on_marker):
        yield


@pytest.fixture
def enqueue_each(django_capture_on_commit_callbacks):
    """``email_enqueue`` for each email, each in its own committed transaction."""

    def enqueue(*emails) -> None:
        for email in emails:
            with django_capture_on_commit_callbacks(execute=True):
                email_enqueue(email=email)

    return enqueue


def test_sends_while_a_task_waits_to_start_queue_no_other(enqueue_each):
    first, second, third = EmailFactory.create_batch(3)

    enqueue_each(first, second, third)

    assert queued_email_ids() == [first.id]
    assert 0 < pending_seconds() <= PENDING_SECONDS


def test_once_the_task_has_started_the_next_send_queues_a_new_one(enqueue_each):
    first, second = EmailFactory.create_batch(2)
    enqueue_each(first)

    task_started(DELIVER_TASK)
    enqueue_each(second)

    assert queued_email_ids() == [first.id, second.id]


@on_orm
def test_a_send_that_finds_a_task_waiting_only_reads(enqueue_each):
    first, second = EmailFactory.create_batch(2)
    enqueue_each(first)

    with CaptureQueriesContext(connection) as queries:
        enqueue_each(second)

    assert [query["sql"].split()[0] for query in queries] == ["SELECT"]
    assert queued_email_ids() == [first.id]


@on_orm
def test_of_two_first_sends_at_once_only_one_queues_a_task(monkeypatch):
    email = EmailFactory()
    create = PendingTask.objects.create

    def another_send_first(**kwargs):
        # Another process marks the first task ever between this one's read and its insert
        # (here inside the insert's savepoint, so its row goes when the insert fails).
        PendingTask.objects.bulk_create([PendingTask(**kwargs)])
        return create(**kwargs)

    monkeypatch.setattr(PendingTask.objects, "create", another_send_first)
    enqueue_unless_pending(DELIVER_TASK, email.id)

    # The other send queues the task; this one queues none.
    assert queued_email_ids() == []


@on_orm
def test_a_marker_past_its_time_is_taken_over(enqueue_each):
    # Its task was lost: the next send queues another.
    first, second = EmailFactory.create_batch(2)
    enqueue_each(first)
    PendingTask.objects.update(until=timezone.now() - timedelta(seconds=1))

    enqueue_each(second)

    assert queued_email_ids() == [first.id, second.id]
    assert 0 < pending_seconds() <= PENDING_SECONDS


def test_a_failed_enqueue_leaves_no_task_said_to_be_pending(monkeypatch):
    email = EmailFactory()

    monkeypatch.setattr("emails.queue.async_task", broker_down)
    with pytest.raises(redis.ConnectionError):
        enqueue_unless_pending(DELIVER_TASK, email.id)
    monkeypatch.undo()

    assert pending_seconds() is None
    enqueue_unless_pending(DELIVER_TASK, email.id)
    assert queued_email_ids() == [email.id]


@autocommit
def test_when_the_marker_cannot_be_cleared_either_the_enqueue_error_is_the_one_raised(
    monkeypatch,
):
    email = EmailFactory()

    monkeypatch.setattr("emails.queue.async_task", broker_down)
    with marker_store_down(), pytest.raises(redis.ConnectionError, match="out of reach"):
        enqueue_unless_pending(DELIVER_TASK, email.id)


@autocommit
def test_an_unreadable_marker_still_queues_the_task():
    email = EmailFactory()

    with marker_store_down():
        enqueue_unless_pending(DELIVER_TASK, email.id)

    assert queued_email_ids() == [email.id]


def test_after_a_full_batch_the_task_queues_a_successor_and_goes_on(settings, smtp_peer):
    settings.DELIVERY_BATCH_SIZE = 2
    emails = EmailFactory.create_batch(3)

    deliver_email(emails[0].id)

    # Two batches in one task: the first, full, queued a task for another worker process.
    assert len(smtp_peer.received) == 3
    for email in emails:
        email.refresh_from_db()
        assert email.status == Status.ACCEPTED
    assert queued_email_ids() == [None]
    deliver_email()
    assert len(smtp_peer.received) == 3


def test_a_task_out_of_time_leaves_the_next_batch_to_its_successor(settings, smtp_peer):
    settings.DELIVERY_BATCH_SIZE = 1
    settings.WORKER_TASK_TIMEOUT = 0  # out of time after the first email
    first, second = oldest_first(2)

    deliver_email(first.id)

    assert [int(r.message["X-Postman-Email-Id"]) for r in smtp_peer.received] == [first.id]
    assert queued_email_ids() == [None]
    deliver_email()
    assert [int(r.message["X-Postman-Email-Id"]) for r in smtp_peer.received] == [
        first.id,
        second.id,
    ]


def test_a_batch_that_is_not_full_queues_nothing(settings, smtp_peer):
    settings.DELIVERY_BATCH_SIZE = 3
    emails = EmailFactory.create_batch(2)

    deliver_email(emails[0].id)

    assert len(smtp_peer.received) == 2
    assert queued_email_ids() == []


def test_a_delivery_task_as_it_starts_lets_the_next_send_queue_a_task(enqueue_each, smtp_peer):
    first, second = EmailFactory.create_batch(2)
    enqueue_each(first)

    deliver_email(first.id)
    enqueue_each(second)

    assert len(smtp_peer.received) == 2
    # The first task was run here without being taken off the queue; the second is new.
    assert queued_email_ids() == [first.id, second.id]


@autocommit
def test_a_task_that_cannot_clear_the_marker_still_delivers(enqueue_each, smtp_peer, caplog):
    email = EmailFactory()
    enqueue_each(email)

    with marker_store_down():
        deliver_email(email.id)

    email.refresh_from_db()
    assert email.status == Status.ACCEPTED
    assert "Could not clear the pending-task marker" in caplog.text
    # The marker is left to expire: until then, a send queues nothing.
    assert pending_seconds() is not None
