"""What is waiting in django-q2's queue, whichever broker the settings chose (ORM or Redis).

The delivery tests run once with the ORM broker and once with ``REDIS_URL`` set (CI); both
brokers are read without taking anything off the queue.
"""

from __future__ import annotations

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from emails.models import PendingTask
from emails.queue import pending_key
from emails.services.delivery import DELIVER_TASK


def queued_tasks() -> list[dict]:
    broker = get_broker()
    if isinstance(broker, ORM):
        packages = list(
            OrmQ.objects.filter(key=broker.list_key)
            .order_by("id")
            .values_list("payload", flat=True)
        )
    elif isinstance(broker, Redis):
        packages = broker.connection.lrange(broker.list_key, 0, -1)
    else:
        raise NotImplementedError(type(broker).__name__)
    return [SignedPackage.loads(package) for package in packages]


def queued_email_ids() -> list[int | None]:
    """The email of each queued delivery task; None for a full batch's successor."""
    return [
        task["args"][0] if task["args"] else None
        for task in queued_tasks()
        if task["func"] == DELIVER_TASK
    ]


def purge_queue() -> None:
    """Empty the queue, and forget any task said to be pending. Needed with Redis only: it is
    not rolled back with the test database."""
    broker = get_broker()
    broker.purge_queue()
    if isinstance(broker, Redis):
        broker.connection.delete(pending_key(broker, DELIVER_TASK))


def pending_seconds(func: str = DELIVER_TASK) -> float | None:
    """How long the marker that a task of ``func`` waits to start has to live; None if none
    says so."""
    broker = get_broker()
    if isinstance(broker, Redis):
        ttl = broker.connection.ttl(pending_key(broker, func))
        return ttl if ttl > 0 else None
    task = PendingTask.objects.filter(name=func).first()
    left = (task.until - timezone.now()).total_seconds() if task else 0
    return left if left > 0 else None
