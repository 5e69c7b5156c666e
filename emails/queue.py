"""Putting tasks on the django-q2 queue through one broker per process.

``async_task`` builds a new broker for every call unless given one: with Redis that is a new
client and TCP connection for every send (a quarter of a web worker's time in the benchmark, and
one TIME_WAIT socket per request). The broker is created on first use, so each forked web or
worker process gets its own connection. With the ORM broker, the queue row is inserted without
the broker's ``close_old_connections()`` first (``OrmEnqueueBroker``).

Some tasks act on whatever is due when they run, not on their arguments: a delivery task claims a
batch of the oldest due emails. For those, ``enqueue_unless_pending`` queues a task only when
none is waiting to start, since any task that starts later sees everything committed before it
(docs/delivery.md, "Wake-ups"). A marker says one is waiting: set by the call that queues it,
cleared by the task as it starts (``task_started``), and expiring after ``PENDING_SECONDS`` in
case that task is lost. With Redis it is a key beside the queue (SET NX EX); with the ORM broker,
a ``PendingTask`` row, read before it is written, so that a send that finds a task waiting
writes nothing. That read is made on nearly every send, so it is written as SQL: the ORM spent
three times as long compiling it as the database took to answer.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from functools import cache

import redis
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task

from emails.models import PendingTask

logger = logging.getLogger(__name__)

# How long a queued task is trusted to start: if it is lost (its worker killed between taking
# it and starting it), the next call after this queues another.
PENDING_SECONDS = 10
# What a started task leaves in ``PendingTask.until``: long past.
STARTED = datetime(2000, 1, 1, tzinfo=UTC)
# Errors of the store that keeps the marker: Redis, or the database for the ORM broker.
MARKER_ERRORS = (redis.RedisError, DatabaseError)


class OrmEnqueueBroker(ORM):
    """django-q2's ORM broker, as this process's enqueuer: its queue is reached without calling
    ``close_old_connections()`` first.

    That call is for the cluster's own long-lived broker threads. Ours enqueue from a request
    or a task, whose connections Django and the cluster already check at their start; there it
    only discarded the request's health check, so that every enqueue paid a second ``SELECT 1``
    round trip before its ``INSERT``.
    """

    @staticmethod
    def get_connection(list_key: str | None = None):
        return OrmQ.objects.using(Conf.ORM)


@cache
def task_broker() -> Broker:
    broker = get_broker()
    if type(broker) is ORM:
        return OrmEnqueueBroker(list_key=broker.list_key)
    return broker


def enqueue(func: str, *args) -> None:
    async_task(func, *args, broker=task_broker())


def pending_key(broker: Redis, func: str) -> str:
    return f"{broker.list_key}:pending:{func}"


_WAITING_SQL = "SELECT 1 FROM {table} WHERE {name} = %s AND {until} > %s"


@cache
def _waiting_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    meta = PendingTask._meta
    return _WAITING_SQL.format(
        table=quote(meta.db_table),
        name=quote(meta.get_field("name").column),
        until=quote(meta.get_field("until").column),
    )


def _task_waiting(func: str, now: datetime) -> bool:
    """Whether a ``PendingTask`` row says a task of ``func`` waits to start."""
    alias = PendingTask.objects.db
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(_waiting_sql(alias), [func, connection.ops.adapt_datetimefield_value(now)])
        return cursor.fetchone() is not None


def _mark_pending(broker: Broker, func: str) -> bool:
    """Say that a task of ``func`` is waiting to start; False if one already was."""
    if isinstance(broker, Redis):
        key = pending_key(broker, func)
        return bool(broker.connection.set(key, 1, nx=True, ex=PENDING_SECONDS))
    now = timezone.now()
    until = now + timedelta(seconds=PENDING_SECONDS)
    # Read first: while a task waits (under load, nearly always), a send writes nothing.
    if _task_waiting(func, now):
        return False
    # Of two calls that find none waiting, one sets the marker; the other updates no row.
    if PendingTask.objects.filter(name=func, until__lte=now).update(until=until):
        return True
    try:
        with transaction.atomic():
            PendingTask.objects.create(name=func, until=until)  # the first task ever
    except IntegrityError:
        return False
    return True


def _clear_pending(broker: Broker, func: str) -> None:
    if isinstance(broker, Redis):
        broker.connection.delete(pending_key(broker, func))
    else:
        PendingTask.objects.filter(name=func).update(until=STARTED)


def enqueue_unless_pending(func: str, *args) -> None:
    """Queue ``func`` unless a task of it is queued and has not started yet."""
    broker = task_broker()
    try:
        if not _mark_pending(broker, func):
            return
    except MARKER_ERRORS:
        # Then the queue is likely out of reach too: let the enqueue below fail as it would.
        logger.warning("Could not read whether a task of %s is pending", func, exc_info=True)
    try:
        enqueue(func, *args)
    except BaseException:
        # No task is waiting after all: the next call must queue one.
        with suppress(*MARKER_ERRORS):
            _clear_pending(broker, func)
        raise


def task_started(func: str) -> None:
    """Called by a task of ``func`` as it starts, before it reads what is due: from now on a
    call of ``enqueue_unless_pending`` queues a new task, for what this one may not see."""
    try:
        _clear_pending(task_broker(), func)
    except MARKER_ERRORS:
        # Until the marker expires, calls queue nothing: what is committed after this task's
        # claim waits at most PENDING_SECONDS for the next call's task (or for the sweeper).
        logger.warning("Could not clear the pending-task marker of %s", func, exc_info=True)
