"""Wake-ups: a delivery task is queued only when none is waiting to start (Redis broker), and a
full batch queues its successor (both brokers). CI runs this file with each broker."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

from emails.models import Status
from emails.queue import (
    PENDING_SECONDS,
    enqueue_unless_pending,
    pending_key,
    task_broker,
    task_started,
)
from emails.services.delivery import DELIVER_TASK, email_enqueue
from emails.tasks import deliver_email
from tests.factories import EmailFactory
from tests.queue import queued_email_ids

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queue")]

# The broker is Redis exactly when REDIS_URL is set (test_delivery.py).
on_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="the pending-task key lives in Redis")


def broker_down(*args, **kwargs):
    raise redis.ConnectionError("the queue is out of reach")


@pytest.fixture
def enqueue_each(django_capture_on_commit_callbacks):
    """``email_enqueue`` for each email, each in its own committed transaction."""

    def enqueue(*emails) -> None:
        for email in emails:
            with django_capture_on_commit_callbacks(execute=True):
                email_enqueue(email=email)

    return enqueue


@on_redis
def test_sends_while_a_task_waits_to_start_queue_no_other(enqueue_each):
    first, second, third = EmailFactory.create_batch(3)

    enqueue_each(first, second, third)

    assert queued_email_ids() == [first.id]
    broker = task_broker()
    assert 0 < broker.connection.ttl(pending_key(broker, DELIVER_TASK)) <= PENDING_SECONDS


@on_redis
def test_once_the_task_has_started_the_next_send_queues_a_new_one(enqueue_each):
    first, second = EmailFactory.create_batch(2)
    enqueue_each(first)

    task_started(DELIVER_TASK)
    enqueue_each(second)

    assert queued_email_ids() == [first.id, second.id]


@pytest.mark.skipif(bool(settings.REDIS_URL), reason="the ORM broker keeps no key")
def test_without_redis_every_send_queues_a_task(enqueue_each):
    first, second = EmailFactory.create_batch(2)

    enqueue_each(first, second)

    assert queued_email_ids() == [first.id, second.id]


@on_redis
def test_a_failed_enqueue_leaves_no_task_said_to_be_pending(monkeypatch):
    email = EmailFactory()

    monkeypatch.setattr("emails.queue.async_task", broker_down)
    with pytest.raises(redis.ConnectionError):
        enqueue_unless_pending(DELIVER_TASK, email.id)
    monkeypatch.undo()

    broker = task_broker()
    assert not broker.connection.exists(pending_key(broker, DELIVER_TASK))
    enqueue_unless_pending(DELIVER_TASK, email.id)
    assert queued_email_ids() == [email.id]


@on_redis
def test_when_the_key_cannot_be_cleared_either_the_enqueue_error_is_the_one_raised(monkeypatch):
    email = EmailFactory()
    broker = task_broker()

    def no_answer(*args, **kwargs):
        raise redis.TimeoutError("no answer")

    monkeypatch.setattr("emails.queue.async_task", broker_down)
    monkeypatch.setattr(broker.connection, "delete", no_answer)
    with pytest.raises(redis.ConnectionError, match="the queue is out of reach"):
        enqueue_unless_pending(DELIVER_TASK, email.id)


@on_redis
def test_an_unreadable_key_still_queues_the_task(monkeypatch):
    email = EmailFactory()
    broker = task_broker()

    def unreadable(*args, **kwargs):
        raise redis.TimeoutError("no answer")

    monkeypatch.setattr(broker.connection, "set", unreadable)
    enqueue_unless_pending(DELIVER_TASK, email.id)
    monkeypatch.undo()

    assert queued_email_ids() == [email.id]


def test_a_full_batch_queues_its_successor_and_the_successor_takes_the_rest(settings, smtp_peer):
    settings.DELIVERY_BATCH_SIZE = 2
    emails = EmailFactory.create_batch(3)

    deliver_email(emails[0].id)

    assert len(smtp_peer.received) == 2
    assert queued_email_ids() == [None]
    deliver_email()
    assert len(smtp_peer.received) == 3
    for email in emails:
        email.refresh_from_db()
        assert email.status == Status.ACCEPTED
    # The last batch was not full: nothing more is queued.
    assert queued_email_ids() == [None]


def test_a_batch_that_is_not_full_queues_nothing(settings, smtp_peer):
    settings.DELIVERY_BATCH_SIZE = 3
    emails = EmailFactory.create_batch(2)

    deliver_email(emails[0].id)

    assert len(smtp_peer.received) == 2
    assert queued_email_ids() == []


@on_redis
def test_a_delivery_task_as_it_starts_lets_the_next_send_queue_a_task(enqueue_each, smtp_peer):
    first, second = EmailFactory.create_batch(2)
    enqueue_each(first)

    deliver_email(first.id)
    enqueue_each(second)

    assert len(smtp_peer.received) == 2
    # The first task was run here without being taken off the queue; the second is new.
    assert queued_email_ids() == [first.id, second.id]


@on_redis
def test_a_task_that_cannot_clear_the_key_still_delivers(
    enqueue_each, smtp_peer, monkeypatch, caplog
):
    email = EmailFactory()
    enqueue_each(email)
    broker = task_broker()

    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("no answer")

    monkeypatch.setattr(broker.connection, "delete", unreachable)
    deliver_email(email.id)
    monkeypatch.undo()

    email.refresh_from_db()
    assert email.status == Status.ACCEPTED
    assert "Could not clear the pending-task key" in caplog.text
    # The key is left to expire: until then, a send queues nothing.
    assert broker.connection.exists(pending_key(broker, DELIVER_TASK))
