"""The per-agency send rate limit (SPEC §4 "Rate limit"): both backends, and the real thing
across two web processes."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import time_machine
from django.conf import settings as django_settings
from django.db import connection

from apikeys.services import apikey_create
from emails.models import Email, RateLimitWindow
from emails.ratelimit import RateLimitState, ratelimit_hit
from tests.factories import AgencyFactory, UserFactory

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"
# Half a second into a window, so that a frozen clock is far from either edge.
NOON = datetime(2030, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)


@pytest.fixture
def redis_backend(settings) -> redis.Redis:
    settings.REDIS_URL = REDIS_TEST_URL
    return redis.Redis.from_url(REDIS_TEST_URL)


@pytest.fixture
def agency_id() -> int:
    """For the Redis backend, which needs no agency row: an id no other test run shares, so
    that keys left behind (they live two seconds) never meet another run's."""
    return 10**12 + secrets.randbelow(10**12)


def hits(agency_id: int, limit: int, count: int) -> list[RateLimitState]:
    return [ratelimit_hit(agency_id=agency_id, limit=limit) for _ in range(count)]


# --- the state and its headers ------------------------------------------------------------------


def test_the_headers_carry_both_spellings():
    state = RateLimitState(limit=10, remaining=3, reset=1, allowed=True)

    assert state.headers() == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "3",
        "RateLimit-Reset": "1",
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "3",
        "X-RateLimit-Reset": "1",
    }


# --- the database backend -----------------------------------------------------------------------


@pytest.fixture
def agency(db, settings):
    """An agency whose counter lives in the database (no REDIS_URL)."""
    settings.REDIS_URL = ""
    return AgencyFactory()


@time_machine.travel(NOON, tick=False)
def test_database_backend_counts_the_window(agency):
    states = hits(agency.pk, limit=3, count=5)

    assert states == [
        RateLimitState(limit=3, remaining=2, reset=1, allowed=True),
        RateLimitState(limit=3, remaining=1, reset=1, allowed=True),
        RateLimitState(limit=3, remaining=0, reset=1, allowed=True),
        RateLimitState(limit=3, remaining=0, reset=1, allowed=False),
        RateLimitState(limit=3, remaining=0, reset=1, allowed=False),
    ]
    # Refused requests count too, in the one row of the agency.
    window = RateLimitWindow.objects.get(agency=agency)
    assert (window.window, window.count) == (int(NOON.timestamp()), 5)


def test_database_backend_starts_over_in_the_next_second(agency):
    with time_machine.travel(NOON, tick=False) as traveller:
        hits(agency.pk, limit=2, count=3)
        traveller.shift(0.4)  # 12:00:00.9, still the same window
        assert ratelimit_hit(agency_id=agency.pk, limit=2).allowed is False

        traveller.shift(0.1)  # 12:00:01.0, a new one
        state = ratelimit_hit(agency_id=agency.pk, limit=2)

    assert state == RateLimitState(limit=2, remaining=1, reset=1, allowed=True)
    window = RateLimitWindow.objects.get(agency=agency)
    assert (window.window, window.count) == (int(NOON.timestamp()) + 1, 1)


def test_database_backend_keeps_agencies_apart(agency):
    other = AgencyFactory()

    with time_machine.travel(NOON, tick=False):
        hits(agency.pk, limit=1, count=2)
        state = ratelimit_hit(agency_id=other.pk, limit=1)

    assert state.allowed is True
    assert RateLimitWindow.objects.get(agency=other).count == 1


def test_the_reset_is_whole_seconds_to_the_windows_end(agency):
    with time_machine.travel(datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC), tick=False) as t:
        at_start = ratelimit_hit(agency_id=agency.pk, limit=5)
        t.shift(0.999)
        at_end = ratelimit_hit(agency_id=agency.pk, limit=5)

    assert (at_start.reset, at_end.reset) == (1, 1)


def test_a_limit_of_zero_is_unlimited(agency):
    assert hits(agency.pk, limit=0, count=3) == [None, None, None]
    assert not RateLimitWindow.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_database_backend_counts_concurrent_hits_exactly(settings):
    """Every thread has its own connection: the upsert alone must keep the count exact."""
    if connection.vendor == "sqlite":
        pytest.skip("in-memory SQLite locks tables without waiting; the file database waits")
    settings.REDIS_URL = ""
    agency = AgencyFactory()
    threads = 16
    barrier = threading.Barrier(threads)

    def hit() -> int:
        try:
            barrier.wait()
            return ratelimit_hit(agency_id=agency.pk, limit=1000).remaining
        finally:
            connection.close()

    with time_machine.travel(NOON, tick=False), ThreadPoolExecutor(threads) as pool:
        remaining = list(pool.map(lambda _: hit(), range(threads)))

    assert sorted(remaining) == list(range(1000 - threads, 1000))


# --- the Redis backend --------------------------------------------------------------------------


@time_machine.travel(NOON, tick=False)
def test_redis_backend_counts_the_window(redis_backend, agency_id, db):
    states = hits(agency_id, limit=2, count=4)

    assert [(s.remaining, s.allowed, s.reset) for s in states] == [
        (1, True, 1),
        (0, True, 1),
        (0, False, 1),
        (0, False, 1),
    ]
    key = f"ratelimit:{agency_id}:{int(NOON.timestamp())}"
    assert int(redis_backend.get(key)) == 4
    assert 0 < redis_backend.pttl(key) <= 2000
    assert not RateLimitWindow.objects.exists()  # the database is not involved


def test_redis_backend_starts_over_in_the_next_second(redis_backend, agency_id):
    with time_machine.travel(NOON, tick=False) as traveller:
        hits(agency_id, limit=1, count=2)
        traveller.shift(0.5)
        state = ratelimit_hit(agency_id=agency_id, limit=1)

    assert state == RateLimitState(limit=1, remaining=0, reset=1, allowed=True)
    assert int(redis_backend.get(f"ratelimit:{agency_id}:{int(NOON.timestamp()) + 1}")) == 1


def test_redis_backend_does_not_extend_a_window_it_refuses(redis_backend, agency_id):
    with time_machine.travel(NOON, tick=False):
        ratelimit_hit(agency_id=agency_id, limit=1)
        key = f"ratelimit:{agency_id}:{int(NOON.timestamp())}"
        first_ttl = redis_backend.pttl(key)
        time.sleep(0.2)  # real time: Redis expires keys by its own clock
        refused = ratelimit_hit(agency_id=agency_id, limit=1)

    assert refused.allowed is False
    assert redis_backend.pttl(key) <= first_ttl - 150


def test_redis_backend_limit_zero_touches_nothing(redis_backend, agency_id):
    with time_machine.travel(NOON, tick=False):
        assert ratelimit_hit(agency_id=agency_id, limit=0) is None

    assert redis_backend.get(f"ratelimit:{agency_id}:{int(NOON.timestamp())}") is None


def test_an_unreachable_redis_falls_back_to_the_database(settings, agency, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/15"  # nothing listens on port 1

    with time_machine.travel(NOON, tick=False):
        states = hits(agency.pk, limit=1, count=2)

    assert [s.allowed for s in states] == [True, False]
    assert RateLimitWindow.objects.get(agency=agency).count == 2
    assert "Redis unavailable" in caplog.text


# --- many web processes -------------------------------------------------------------------------


SEND = "/v1/transactional/email/send"
PROCESS_LIMIT = 5
BURST = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    db = django_settings.DATABASES["default"]
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{quote(db['NAME'], safe='')}"


def _request(port: int, method: str, path: str, headers=None, body: bytes | None = None):
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _wait_until_up(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log.read_text()}")
        try:
            if _request(port, "GET", "/healthz")[0] == HTTPStatus.OK:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start in 30 s")


@pytest.fixture(params=["database", "redis"])
def web_processes(request, transactional_db, tmp_path) -> Iterator[list[int]]:
    """Two separate gunicorn servers (one worker each) on the test database; their ports."""
    if connection.vendor != "postgresql":
        pytest.skip("two processes cannot share an in-memory SQLite test database")
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DEBUG": "false",
        "HTTPS_ONLY": "false",
        "SECRET_KEY": "multi-process-test-secret-key",
        "API_KEY_PEPPER": django_settings.API_KEY_PEPPER,
        "ALLOWED_HOSTS": "127.0.0.1",
        "REDIS_URL": REDIS_TEST_URL if request.param == "redis" else "",
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    servers = []
    try:
        for n in range(2):
            port = _free_port()
            log = tmp_path / f"gunicorn-{n}.log"
            command = [str(gunicorn), "postman_email.wsgi", "--workers", "1", "--threads", "4"]
            process = subprocess.Popen(
                [*command, "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
                cwd=django_settings.BASE_DIR,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log.open("wb"),
            )
            servers.append((process, port, log))
        for process, port, log in servers:
            _wait_until_up(process, port, log)
        yield [port for _, port, _ in servers]
    finally:
        for process, _, _ in servers:
            process.terminate()
        for process, _, _ in servers:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _burst(ports: list[int], headers: dict[str, str], body: bytes) -> list:
    """POST to every port in ``ports`` at once (one thread each, released together)."""
    barrier = threading.Barrier(len(ports))

    def send(port: int):
        barrier.wait()
        return _request(port, "POST", SEND, headers, body)

    with ThreadPoolExecutor(len(ports)) as pool:
        return list(pool.map(send, ports))


@pytest.mark.slow
def test_the_limit_holds_across_web_processes(web_processes):
    user = UserFactory(agency=AgencyFactory(rate_limit_per_second=PROCESS_LIMIT))
    plaintext = apikey_create(owner=user, label="burst").plaintext
    headers = {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"}
    # Invalid on purpose: the limit is checked before the body, and nothing gets recorded.
    body = json.dumps({}).encode()
    ports = [web_processes[i % 2] for i in range(BURST)]

    for _attempt in range(3):
        # Start just after a second boundary so that the burst fits in one window.
        time.sleep(1 - time.time() % 1 + 0.02)
        window = int(time.time())
        responses = _burst(ports, headers, body)
        if int(time.time()) == window:
            break
    else:
        pytest.fail("three bursts in a row straddled a second boundary")

    refused = [r for r in responses if r[0] == HTTPStatus.TOO_MANY_REQUESTS]
    allowed = [r for r in responses if r[0] != HTTPStatus.TOO_MANY_REQUESTS]
    assert len(allowed) == PROCESS_LIMIT, [r[0] for r in responses]
    assert {status for status, _, _ in allowed} == {HTTPStatus.BAD_REQUEST}
    for _status, response_headers, content in refused:
        assert json.loads(content) == {
            "code": "rate_limit",
            "message": "Too many requests. Please try again later.",
        }
        assert int(response_headers["Retry-After"]) >= 1
        assert response_headers["RateLimit-Remaining"] == "0"
    assert not Email.objects.exists()
