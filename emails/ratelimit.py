"""Per-agency send rate limit: a fixed one-second window shared by every web process.

The window is the current epoch second. With ``REDIS_URL`` set the counter lives in Redis (one
round trip: INCR plus an EXPIRE that only garbage-collects the key); otherwise in the database's
``emails.RateLimitWindow`` table, advanced by one atomic upsert. Either way the count is shared
by all processes and machines, whose clocks are assumed NTP-synchronised (a window is a second of
wall-clock time).

Every call counts, refused ones included: the counter is only compared with the limit, so a
refused request neither extends the window nor penalises the next one.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 1
# Keys outlive their window a little so that a slow request still finds its own counter.
_REDIS_KEY_TTL = WINDOW_SECONDS + 1
# A broken Redis must not stall every send for long before the database takes over.
_REDIS_TIMEOUT = 0.5


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    # Whole seconds until the window resets (>= 1).
    reset: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        """The IETF draft's ``RateLimit-*`` headers and the common ``X-RateLimit-*`` forms."""
        values = {"Limit": self.limit, "Remaining": self.remaining, "Reset": self.reset}
        return {
            f"{prefix}RateLimit-{name}": str(value)
            for prefix in ("", "X-")
            for name, value in values.items()
        }


def ratelimit_hit(*, agency_id: int, limit: int) -> RateLimitState | None:
    """Count one send request of the agency; None when its limit is 0 (unlimited).

    Call it outside a transaction: in autocommit the database backend's upsert holds the
    agency's counter row only for the statement, not for the whole request.
    """
    if limit <= 0:
        return None
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    count = _redis_hit(agency_id, window) if settings.REDIS_URL else None
    if count is None:
        count = _database_hit(agency_id, window)
    reset = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    return RateLimitState(
        limit=limit, remaining=max(0, limit - count), reset=reset, allowed=count <= limit
    )


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    # One client (and connection pool) per process, reused by every request and thread.
    return redis.Redis.from_url(
        url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
    )


def _redis_hit(agency_id: int, window: int) -> int | None:
    """The window's count after this hit, or None if Redis cannot be reached."""
    key = f"ratelimit:{agency_id}:{window}"
    try:
        pipe = _redis_client(settings.REDIS_URL).pipeline(transaction=False)
        pipe.incr(key)
        # NX: only the window's first hit sets the expiry, later ones do not extend it.
        pipe.expire(key, _REDIS_KEY_TTL, nx=True)
        count, _ = pipe.execute()
    except redis.RedisError:
        # Sending matters more than exact limiting while Redis is down: fall back to the
        # database, which every process shares too.
        logger.warning("Rate limit: Redis unavailable, using the database", exc_info=True)
        return None
    return int(count)


# The table of emails.RateLimitWindow (checked by a test); "window" is an SQL keyword and "count"
# a function name, so both are quoted, as the standard and both databases allow.
_UPSERT_WINDOW = """
INSERT INTO emails_ratelimitwindow (agency_id, "window", "count") VALUES (%s, %s, 1)
ON CONFLICT (agency_id) DO UPDATE SET
    "count" = CASE WHEN emails_ratelimitwindow."window" = excluded."window"
                   THEN emails_ratelimitwindow."count" + 1 ELSE 1 END,
    "window" = excluded."window"
RETURNING "count"
"""


def _database_hit(agency_id: int, window: int) -> int:
    """One atomic upsert: a new window restarts the count at 1, the current one adds 1.

    PostgreSQL and SQLite >= 3.35 both support ``ON CONFLICT ... DO UPDATE ... RETURNING``.
    Concurrent hits on PostgreSQL queue on the row lock and each sees the previous one's count;
    SQLite has a single writer anyway.
    """
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_WINDOW, [agency_id, window])
        (count,) = cursor.fetchone()
    return count
