"""Putting tasks on the django-q2 queue through one broker per process.

``async_task`` builds a new broker for every call unless given one: with Redis that is a new
client and TCP connection for every send (a quarter of a web worker's time in the benchmark, and
one TIME_WAIT socket per request). The broker is created on first use, so each forked web or
worker process gets its own connection.
"""

from __future__ import annotations

from functools import cache

from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task


@cache
def task_broker() -> Broker:
    return get_broker()


def enqueue(func: str, *args) -> None:
    async_task(func, *args, broker=task_broker())
