"""CPU per request of each endpoint, in one process, without gunicorn or a load generator.

``python -m bench.inprocess [--broker orm|redis] [--profile PATH]`` sets up its own scratch
database (and Redis), then sends each request through Django's full handler (middleware included)
with the test client and reports the CPU time one request costs: the best of several rounds, so
that other load on the machine disturbs it as little as possible. It is the steady figure to
compare two versions of the code with; ``bench/run.py`` measures the service as deployed.
``--profile PATH`` prints a pyinstrument profile of that endpoint instead.

``--worker`` measures the worker's side instead: ``WORKER_EMAILS`` emails recorded as the send
API leaves them are delivered to postfix's smtp-sink by the delivery task's body
(``email_deliver``), called in this process until none is due; it reports the CPU one email
costs this process (the best of ``ROUNDS`` rounds), or with ``--profile worker`` a pyinstrument
profile of one round. The database's own CPU is not counted.

``--instructions`` counts, instead of CPU time, the machine instructions one request executes
(valgrind's callgrind: the process runs once with no measured requests and once with
``INSTRUCTION_REQUESTS`` of them, and the difference is divided by their number). The count does
not move with the machine's speed or with what else runs on it: the figure for comparing two
versions of the code on a shared machine, where even the best of several timed rounds drifts.
Each endpoint takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench import run

ROUNDS = 5
REQUESTS = 100
WARMUP = 20
INSTRUCTION_REQUESTS = 100
WORKER_EMAILS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=run.BROKERS, default="redis")
    parser.add_argument("--profile", metavar="PATH", help="profile this endpoint (pyinstrument)")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per request (callgrind)"
    )
    parser.add_argument(
        "--worker", action="store_true", help="CPU per email delivered, instead of per request"
    )
    # Internal: the process callgrind runs, in the environment of the parent's scratch database.
    parser.add_argument("--requests-of", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.requests_of:
        path, count = args.requests_of
        send_requests(os.environ["BENCH_KEY"], Path(os.environ["BENCH_BODY"]), path, int(count))
        return

    # Its own scratch database and work directory, so that it can run beside bench/run.py.
    run.DB_NAME = f"{run.DB_PREFIX}{os.getpid()}_inprocess"
    run.WORK_DIR = run.BASE_DIR / "var" / "bench-inprocess"
    bench = run.Bench(run.QUICK, argparse.Namespace(broker=args.broker, profile=False))
    try:
        bench.create_database()
        if args.broker == "redis":
            bench.start_redis()
        os.environ.update(bench.env(args.broker, LOG_LEVEL="WARNING"))
        if args.worker:
            bench.start_sink()
            measure_worker(bench, args.broker, profile=args.profile == "worker")
        elif args.instructions:
            count_instructions(bench.key, bench.body_file)
        else:
            measure(bench.key, bench.body_file, args.profile)
    finally:
        bench.close()


def requester(key: str, body_file: Path):
    """Set Django up; a function that sends one request to a path and checks its answer."""
    import django

    django.setup()
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")
    body = body_file.read_text()

    def request(path: str) -> None:
        if path in (run.SEND_PATH, "/bench/ceiling", "/bench/floor"):
            response = client.post(path, body, content_type="application/json")
        else:
            response = client.get(path)
        assert response.status_code in (200, 201), (path, response.status_code)

    return request


def endpoints(request) -> tuple[list[str], int]:
    """The endpoints measured, after a few sends so that an email exists to read, and its id."""
    from emails.models import Email

    for _ in range(10):
        request(run.SEND_PATH)
    email_id = Email.objects.order_by("-id").values_list("id", flat=True).first()
    paths = [
        "/bench/ceiling",
        "/bench/floor",
        run.SEND_PATH,
        f"/v1/transactional/email/{email_id}",
        "/v1/transactional/email",
    ]
    return paths, email_id


def send_requests(key: str, body_file: Path, path: str, count: int) -> None:
    request = requester(key, body_file)
    for _ in range(WARMUP + count):
        request(path)


def count_instructions(key: str, body_file: Path) -> None:
    paths, _ = endpoints(requester(key, body_file))
    env = dict(os.environ, BENCH_KEY=key, BENCH_BODY=str(body_file))

    def collected(path: str, count: int) -> int:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [sys.executable, "-m", "bench.inprocess", "--requests-of", path, str(count)]
        result = subprocess.run(
            command, cwd=run.BASE_DIR, env=env, capture_output=True, text=True, check=True
        )
        return int(re.search(r"Collected : (\d+)", result.stderr).group(1))

    print(f"| endpoint | instructions per request (callgrind, {INSTRUCTION_REQUESTS} requests) |")
    print("|---|---|")
    for path in paths:
        base = collected(path, 0)
        per_request = (collected(path, INSTRUCTION_REQUESTS) - base) / INSTRUCTION_REQUESTS
        print(f"| `{path}` | {per_request / 1e6:.2f} M |", flush=True)


def measure(key: str, body_file: Path, profile: str | None) -> None:
    request = requester(key, body_file)
    paths, email_id = endpoints(request)
    if profile:
        from pyinstrument import Profiler

        path = profile.replace("{id}", str(email_id))
        for _ in range(20):
            request(path)
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(REQUESTS * 3):
            request(path)
        profiler.stop()
        print(profiler.output_text(color=False, unicode=False))
        return

    print("| endpoint | CPU per request (best of 5 rounds of 100) |")
    print("|---|---|")
    for path in paths:
        for _ in range(20):
            request(path)
        best = float("inf")
        for _ in range(ROUNDS):
            started = time.process_time()
            for _ in range(REQUESTS):
                request(path)
            best = min(best, (time.process_time() - started) / REQUESTS)
        print(f"| `{path}` | {best * 1000:.2f} ms |", flush=True)


def measure_worker(bench: run.Bench, broker: str, *, profile: bool) -> None:
    import django

    django.setup()
    from bench.harness import seed
    from emails.services.delivery import email_deliver

    def deliver() -> float:
        """Seed a round of emails; the CPU this process spends delivering them, per email."""
        bench.purge(broker)
        seed(WORKER_EMAILS, str(bench.body_file))
        started = time.process_time()
        while bench.counts()[1]:
            email_deliver()
        return (time.process_time() - started) / WORKER_EMAILS

    deliver()  # warm-up: connections, caches
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        deliver()
        profiler.stop()
        print(profiler.output_text(color=False, unicode=False))
        return
    best = min(deliver() for _ in range(ROUNDS))
    print(
        f"worker: {best * 1000:.3f} ms of CPU per email (best of {ROUNDS} rounds of "
        f"{WORKER_EMAILS}, this process only)"
    )


if __name__ == "__main__":
    sys.exit(main())
