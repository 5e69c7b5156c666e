"""CPU per request of each endpoint, in one process, without gunicorn or a load generator.

``python -m bench.inprocess [--broker orm|redis] [--profile PATH]`` sets up its own scratch
database (and Redis), then sends each request through Django's full handler (middleware included)
with the test client and reports the CPU time one request costs: the best of several rounds, so
that other load on the machine disturbs it as little as possible. It is the steady figure to
compare two versions of the code with; ``bench/run.py`` measures the service as deployed.
``--profile PATH`` prints a pyinstrument profile of that endpoint instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench import run

ROUNDS = 5
REQUESTS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=run.BROKERS, default="redis")
    parser.add_argument("--profile", metavar="PATH", help="profile this endpoint (pyinstrument)")
    args = parser.parse_args()

    # Its own scratch database and work directory, so that it can run beside bench/run.py.
    run.DB_NAME = f"{run.DB_PREFIX}{os.getpid()}_inprocess"
    run.WORK_DIR = run.BASE_DIR / "var" / "bench-inprocess"
    bench = run.Bench(run.QUICK, argparse.Namespace(broker=args.broker, profile=False))
    try:
        bench.create_database()
        if args.broker == "redis":
            bench.start_redis()
        os.environ.update(bench.env(args.broker, LOG_LEVEL="WARNING"))
        measure(bench.key, bench.body_file, args.profile)
    finally:
        bench.close()


def measure(key: str, body_file: Path, profile: str | None) -> None:
    import django

    django.setup()
    from django.test import Client

    from emails.models import Email

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")
    body = body_file.read_text()

    def request(path: str) -> None:
        if path in (run.SEND_PATH, "/bench/ceiling", "/bench/floor"):
            response = client.post(path, body, content_type="application/json")
        else:
            response = client.get(path)
        assert response.status_code in (200, 201), (path, response.status_code)

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


if __name__ == "__main__":
    sys.exit(main())
