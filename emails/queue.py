"""Putting tasks on the django-q2 queue through one broker per process.

``async_task`` builds a new broker for every call unless given one: with Redis that is a new
client and TCP connection for every send (a quarter of a web worker's time in the benchmark, and
one TIME_WAIT socket per request). The broker is created on first use, so each forked web or
worker process gets its own connection. With the ORM broker, the queue row is inserted without
the broker's ``close_old_connections()`` first (``OrmEnqueueBroker``).

Some tasks act on whatever is due when they run, not on their arguments: a delivery task claims a
batch of the oldest due emails. For those, ``enqueue_unless_pending`` queues a task only when
none is waiting to start, since any task that starts later sees everything committed before it
(docs/delivery.md, "Wake-ups"). With the Redis broker a key beside the queue says one is waiting:
set (SET NX) by the call that queues it, deleted by the task as it starts (``task_started``),
and expiring after ``PENDING_SECONDS`` in case that task is lost. The ORM broker has no such key:
every call queues a task.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from functools import cache

import redis
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task

logger = logging.getLogger(__name__)

# How long a queued task is trusted to start: if it is lost (its worker killed between taking
# it and starting it), the next call after this queues another.
PENDING_SECONDS = 10


class OrmEnqueueBroker(ORM):
    """django-q2's ORM broker, as this process's enqueuer: it inserts the queue row as the
    ORM broker does, without calling ``close_old_connections()`` before.

    That call is for the cluster's own long-lived broker threads. Ours enqueue from a request
    or a task, whose connections Django and the cluster already check at their start; there it
    only discarded the request's health check, so that every enqueue paid a second ``SELECT 1``
    round trip before its ``INSERT``.
    """

    def enqueue(self, task: str) -> int:
        key = self.list_key or Conf.CLUSTER_NAME
        return OrmQ.objects.using(Conf.ORM).create(key=key, payload=task, lock=timezone.now()).pk


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


def enqueue_unless_pending(func: str, *args) -> None:
    """Queue ``func`` unless a task of it is queued and has not started yet."""
    broker = task_broker()
    if not isinstance(broker, Redis):
        enqueue(func, *args)
        return
    key = pending_key(broker, func)
    try:
        if not broker.connection.set(key, 1, nx=True, ex=PENDING_SECONDS):
            return
    except redis.RedisError:
        # Then the queue is out of reach too: let the enqueue below fail as it would have.
        logger.warning("Could not read the pending-task key %s", key, exc_info=True)
    try:
        enqueue(func, *args)
    except BaseException:
        # No task is waiting after all: the next call must queue one.
        with suppress(redis.RedisError):
            broker.connection.delete(key)
        raise


def task_started(func: str) -> None:
    """Called by a task of ``func`` as it starts, before it reads what is due: from now on a
    call of ``enqueue_unless_pending`` queues a new task, for what this one may not see."""
    broker = task_broker()
    if not isinstance(broker, Redis):
        return
    try:
        broker.connection.delete(pending_key(broker, func))
    except redis.RedisError:
        # Until the key expires, calls queue nothing: what is committed after this task's claim
        # waits at most PENDING_SECONDS for the next call's task (or for the sweeper).
        logger.warning("Could not clear the pending-task key of %s", func, exc_info=True)
