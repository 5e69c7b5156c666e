"""``make bench``: the whole service on 127.0.0.1, measured against the limits of this machine.

One run starts a scratch PostgreSQL database, a private Redis, an SMTP sink, gunicorn (production
settings, gunicorn.conf.py) and the qcluster worker, then measures (docs/performance.md explains
each figure):

1. ceilings: a plain Django JSON view and a minimal DRF "authenticate + insert one row" view
   under the same wrk load, and raw smtplib delivery to the sink over one connection;
2. the send API (and GET by id, and the list) under wrk, 32 connections;
3. the worker: N queued emails delivered with 1 and with 2 worker processes;
4. end to end at a steady request rate: from the POST to ACCEPTED;
5. peak RSS of the web and worker processes, and the CPU each request or email cost;

with the django-q2 ORM broker and with the Redis broker, and prints a Markdown table (also written
to bench/results/latest.md, raw figures to bench/results/latest.json). ``--quick`` (``make bench
QUICK=1``) runs the same phases scaled down for CI's smoke run; it and partial runs (``--only``,
``--broker``, ``--emails``) write var/bench/latest.md instead. Every load is bounded in count and
time and goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import psutil
import psycopg

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = BASE_DIR / "bench"
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BASE_DIR / "var" / "bench"
LUA_SCRIPT = BENCH_DIR / "wrk" / "request.lua"
HTML_BODY = BENCH_DIR / "payloads" / "appointment.html"

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
# One scratch database per run, so that two runs on one server (a developer's and CI's clone)
# never drop each other's; a run that died leaves one behind, which the next run drops.
DB_PREFIX = "postman_bench_"
DB_NAME = f"{DB_PREFIX}{os.getpid()}"
BENCH_EMAIL = "bench@bench.gov.sg"
SEND_PATH = "/v1/transactional/email/send"
BROKERS = ("orm", "redis")
PHASES = ("ceilings", "api", "worker", "e2e")

# The targets of issue 8 (docs/performance.md).
TARGET_SEND_RPS = 300
TARGET_SEND_P99_MS = 250
TARGET_SEND_VS_FLOOR = 0.70
TARGET_WORKER_EPS = 400
TARGET_WORKER_VS_SMTP = 0.30
TARGET_E2E_P50_MS = 200
TARGET_E2E_P99_MS = 1000
TARGET_WEB_RSS_MB = 120


@dataclass(frozen=True)
class Scale:
    warmup_seconds: int
    ceiling_seconds: int
    send_seconds: int
    read_seconds: int
    connections: int
    smtp_messages: int
    worker_emails: int
    e2e_rate: int
    e2e_seconds: int


FULL = Scale(
    warmup_seconds=2,
    ceiling_seconds=10,
    send_seconds=20,
    read_seconds=10,
    connections=32,
    smtp_messages=10_000,
    worker_emails=10_000,
    e2e_rate=100,
    e2e_seconds=30,
)
QUICK = Scale(
    warmup_seconds=0,
    ceiling_seconds=2,
    send_seconds=3,
    read_seconds=2,
    connections=32,
    smtp_messages=1_000,
    worker_emails=300,
    e2e_rate=100,
    e2e_seconds=3,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval=0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) / 1024 if match else 0.0


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


# ---------------------------------------------------------------------------------------------
# Processes and the CPU they use


class Processes:
    """The subprocesses of the run, each in its own process group, logs under var/bench/logs."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        handle = (self.log_dir / f"{name}.log").open("a")
        handle.write(f"\n--- {datetime.now(UTC).isoformat()} {' '.join(command)}\n")
        handle.flush()
        self.running[name] = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def check(self, name: str) -> None:
        process = self.running[name]
        if process.poll() is not None:
            tail = (self.log_dir / f"{name}.log").read_text()[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def stop(self, name: str, timeout: float = 20) -> None:
        process = self.running.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Anything left in the group (a qcluster child) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)

    def tree(self, name: str) -> list[psutil.Process]:
        process = self.running.get(name)
        if process is None or process.poll() is not None:
            return []
        try:
            root = psutil.Process(process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []


def _cpu_seconds(processes: list[psutil.Process], *, children: bool = False) -> dict[int, float]:
    """CPU seconds used so far by each process, by pid."""
    used = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            used[process.pid] = times.user + times.system
            if children:
                used[process.pid] += times.children_user + times.children_system
    return used


def _database_backends() -> list[psutil.Process]:
    """PostgreSQL's backends serving the scratch database (their title names it)."""
    backends = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if f" {DB_NAME} " in " ".join(process.info["cmdline"] or ()):
                backends.append(process)
    return backends


@dataclass
class CpuSample:
    at: float
    busy: float
    # Our process trees: CPU seconds so far, their reaped children's included.
    trees: dict[str, float]
    # The database's backends, by pid (the postmaster, not us, reaps them).
    backends: dict[int, float]


class CpuMeter:
    """CPU seconds used by each part of the stack, and by everything else on the machine.

    Other sessions may share this machine; "other" (all busy CPU minus ours) tells how much they
    took during a measurement, so a disturbed figure can be recognised as such. A process tree
    counts the children it reaped (qcluster recycles its workers, gunicorn may too).
    """

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        # Backends come and go (CONN_MAX_AGE): a thread notes each one's CPU every second, so
        # one that ends loses at most its last second.
        self.backends: dict[int, float] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._watch_backends, daemon=True).start()

    def _watch_backends(self) -> None:
        while True:
            self._note_backends()
            time.sleep(1)

    def _note_backends(self) -> dict[int, float]:
        seen = _cpu_seconds(_database_backends())
        with self.lock:
            self.backends.update(seen)
            return dict(self.backends)

    def sample(self) -> CpuSample:
        trees = {
            name: sum(_cpu_seconds(self.processes.tree(name), children=True).values())
            for name in self.processes.running
        }
        # This process, with the load generators it ran and waited for (wrk, the seeder).
        trees["bench"] = sum(_cpu_seconds([psutil.Process()], children=True).values())
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - times.iowait
        return CpuSample(
            at=time.monotonic(),
            busy=busy,
            trees=trees,
            backends=self._note_backends(),
        )

    @staticmethod
    def usage(before: CpuSample, after: CpuSample) -> dict[str, float]:
        """CPU seconds per group between two samples ("db" for the database), and
        ``other_pct``: the share of all cores that processes outside this run used meanwhile."""
        used = {
            name: max(0.0, cpu - before.trees.get(name, 0.0)) for name, cpu in after.trees.items()
        }
        used["db"] = sum(
            max(0.0, cpu - before.backends.get(pid, 0.0)) for pid, cpu in after.backends.items()
        )
        wall = max(1e-9, after.at - before.at)
        other = max(0.0, after.busy - before.busy - sum(used.values()))
        used["other_pct"] = 100 * other / (wall * (os.cpu_count() or 1))
        return used


# ---------------------------------------------------------------------------------------------
# Load generators


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    # CPU milliseconds per request: the web workers', the database's; and other sessions' share.
    web_cpu_ms: float = float("nan")
    db_cpu_ms: float = float("nan")
    other_pct: float = float("nan")

    @classmethod
    def parse(cls, output: str) -> LoadResult:
        match = re.search(r"^BENCH_RESULT (\{.*\})$", output, re.MULTILINE)
        if not match:
            raise RuntimeError(f"wrk printed no result:\n{output}")
        raw = json.loads(match[1])
        seconds = raw["duration_us"] / 1e6
        return cls(
            requests=raw["requests"],
            seconds=seconds,
            rps=raw["requests"] / seconds,
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            non_2xx=raw["non_2xx"],
            socket_errors=sum(
                raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
            ),
        )

    @property
    def clean(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0


def wrk(
    url: str, *, seconds: int, connections: int, key: str, body_file: Path | None
) -> LoadResult:
    env = {"PATH": os.environ["PATH"], "BENCH_KEY": key, "BENCH_BODY_FILE": str(body_file or "")}
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(LUA_SCRIPT), url]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    return LoadResult.parse(result.stdout)


@dataclass
class PacedResult:
    sent: int
    # Per 201 response: (email id, the wall-clock time its request was due, its response time).
    emails: list[tuple[int, float, float]] = field(default_factory=list)


def paced_posts(
    port: int,
    *,
    key: str,
    body: bytes,
    rate: int,
    seconds: int,
    on_created: Callable[[int], None],
    threads: int = 16,
) -> PacedResult:
    """POST at a steady ``rate`` for ``seconds``: an open loop, request i is due at t0 + i/rate.

    Latency counts from when a request was due, not from when a free thread got to it, so a slow
    server cannot hide its queueing (no coordinated omission). Bounded: rate * seconds requests,
    each with a 10 s timeout, and the run gives up 30 s after its last slot.
    """
    total = rate * seconds
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    counter = itertools.count()
    start = time.monotonic() + 0.2
    wall_offset = time.time() - time.monotonic()
    give_up = start + seconds + 30
    outcomes: list[tuple[int, float, float] | None] = [None] * total

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while (index := next(counter)) < total and time.monotonic() < give_up:
            due = start + index / rate
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            try:
                connection.request("POST", SEND_PATH, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                continue
            if response.status == 201:
                email_id = int(json.loads(payload)["id"])
                outcomes[index] = (email_id, due + wall_offset, time.monotonic() - due)
                on_created(email_id)
        connection.close()

    clients = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=max(1.0, give_up + 15 - time.monotonic()))
    return PacedResult(sent=total, emails=[o for o in outcomes if o is not None])


class AcceptanceWatch(threading.Thread):
    """Notes when each created email is first seen ACCEPTED (or past it), polling every 20 ms.

    The worker stamps ``accepted_at`` when it claims an email, a few milliseconds before the relay
    answers and the row changes; this watch sees the change itself, so it bounds the end-to-end
    time from above as ``accepted_at`` bounds it from below.
    """

    def __init__(self, dsn: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.deadline = deadline
        self.created: list[int] = []
        self.seen: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            while time.monotonic() < self.deadline:
                waiting = [i for i in list(self.created) if i not in self.seen]
                if not waiting and self.done.is_set():
                    return
                if waiting:
                    rows = connection.execute(
                        "SELECT id FROM emails_email WHERE id = ANY(%s) AND status <> 'UNSENT'",
                        (waiting,),
                    ).fetchall()
                    now = time.time()
                    for (email_id,) in rows:
                        self.seen[email_id] = now
                time.sleep(0.02)


def ceiling_message() -> bytes:
    """A message shaped like the worker's: multipart/alternative, text and the 5 KB HTML."""
    html = HTML_BODY.read_text()
    message = MIMEMultipart("alternative")
    message["Subject"] = "Your appointment on 17 November is confirmed"
    message["From"] = "Postman <info@mail.postman.gov.sg>"
    message["To"] = "citizen@example.com"
    message["Message-ID"] = "<1.0123456789abcdef@mail.postman.gov.sg>"
    message["X-Postman-Email-Id"] = "1"
    message.attach(MIMEText(re.sub(r"<[^>]+>", "", html), "plain", "us-ascii"))
    message.attach(MIMEText(html, "html", "us-ascii"))
    return message.as_bytes().replace(b"\n", b"\r\n")


def smtp_ceiling(port: int, messages: int, rounds: int = 3) -> tuple[float, int]:
    """Messages per second handed to the sink over one persistent smtplib connection (the best
    of ``rounds`` rounds sharing ``messages``: a ceiling, so a round slowed by a passing
    disturbance does not lower it), and the message size in bytes."""
    raw = ceiling_message()
    connection = smtplib.SMTP("127.0.0.1", port, timeout=10)
    connection.ehlo()
    best = 0.0
    per_round = max(1, messages // rounds)
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(per_round):
            connection.sendmail("info@mail.postman.gov.sg", ["citizen@example.com"], raw)
        best = max(best, per_round / (time.perf_counter() - started))
    connection.quit()
    return best, len(raw)


@contextlib.contextmanager
def cores_awake():
    """One spinning process per core under ``SCHED_IDLE``, for as long as the block runs: it
    gets a core only when nothing else wants it, anything that wakes up preempts it at once (in
    whatever process group), and no core ever goes idle.

    One SMTP connection is a ping-pong of short turns (MAIL, RCPT, DATA, the message, each
    waiting for the reply). On an otherwise idle virtual machine each turn also waits for a
    halted vCPU to be woken by the hypervisor: measured quiet, raw SMTP ran at 2,100-3,400
    messages/s here, with the cores kept awake at up to 8,900 (docs/performance.md). The worker
    phases keep the cores busy themselves, so the ceiling they are compared with is the better
    of the two.
    """
    # A spinner also stops by itself once its parent is gone (a bench killed with SIGKILL).
    code = (
        "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
        f"while os.getppid() == {os.getpid()}:\n    for _ in range(100_000): pass\n"
    )
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.2)  # until they run
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


# ---------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, scale: Scale, args: argparse.Namespace) -> None:
        self.scale = scale
        self.args = args
        self.results: dict = {"scale": asdict(scale), "brokers": {}}
        shutil.rmtree(WORK_DIR, ignore_errors=True)
        (WORK_DIR / "logs").mkdir(parents=True)
        self.processes = Processes(WORK_DIR / "logs")
        self.cpu = CpuMeter(self.processes)
        self.web_port = free_port()
        self.smtp_port = free_port()
        self.redis_port = free_port()
        self.body_file = WORK_DIR / "send.json"
        self.body_file.write_text(
            json.dumps(
                {
                    "recipient": "citizen@example.com",
                    "subject": "Your appointment on 17 November is confirmed",
                    "body": HTML_BODY.read_text(),
                    "tag": "appointment",
                }
            )
        )
        self.base_env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", str(WORK_DIR)),
            "LANG": "C.UTF-8",
            "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
            "API_KEY_PEPPER": "bench-only-api-key-pepper",
            "ALLOWED_HOSTS": "127.0.0.1",
            "HTTPS_ONLY": "false",
            "DATABASE_URL": f"{PG_SERVER}/{DB_NAME}",
            "EMAIL_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "VAR_DIR": str(WORK_DIR / "var"),
        }
        # Knobs for experiments (docs/performance.md): gunicorn's, the worker count and the
        # delivery batch.
        for name in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "DELIVERY_BATCH_SIZE"):
            if name in os.environ:
                self.base_env[name] = os.environ[name]
        self.key = ""
        self.sink = ""

    # --- infrastructure ----------------------------------------------------------------------

    def env(self, broker: str, **extra: str) -> dict[str, str]:
        env = dict(self.base_env, **extra)
        if broker == "redis":
            env["REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
        return env

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(f"{PG_SERVER}/{DB_NAME}", autocommit=True) as connection:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self) -> None:
        log(f"creating the scratch database {DB_NAME}")
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
            names = connection.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{DB_PREFIX}%",)
            ).fetchall()
            for (name,) in names:
                pid = name.removeprefix(DB_PREFIX)
                if pid.isdigit() and not psutil.pid_exists(int(pid)):
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            connection.execute(f"CREATE DATABASE {DB_NAME}")
        env = self.env("orm")
        self.manage(["migrate", "--noinput", "--verbosity", "0"], env)
        output = self.manage(
            ["create_api_key", "--email", BENCH_EMAIL, "--label", "bench", "--rate-limit", "0"],
            env,
        )
        self.key = output.strip().splitlines()[-1]
        self.sql(
            "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, api_key_id bigint NOT NULL,"
            " payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        [(version,)] = self.sql("SHOW server_version")
        self.results["postgres"] = version.split()[0]

    def drop_database(self) -> None:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")

    def manage(self, command: list[str], env: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {command[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start_sink(self) -> None:
        sink = shutil.which("smtp-sink") or next(
            (path for path in ("/usr/sbin/smtp-sink",) if Path(path).exists()), None
        )
        if sink:
            command = [sink, f"127.0.0.1:{self.smtp_port}", "1024"]
            if os.geteuid() == 0:
                command[1:1] = ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
            self.sink = "postfix's smtp-sink"
        else:
            command = [sys.executable, str(BENCH_DIR / "sink.py"), str(self.smtp_port)]
            self.sink = "aiosmtpd (bench/sink.py: postfix's smtp-sink is not installed)"
        self.processes.start("sink", command, self.base_env)
        wait_until(lambda: port_open(self.smtp_port), timeout=15, what="the SMTP sink")
        log(f"SMTP sink: {self.sink} on port {self.smtp_port}")

    def start_redis(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(WORK_DIR)]
        self.processes.start("redis", command, self.base_env)
        wait_until(lambda: port_open(self.redis_port), timeout=15, what="Redis")

    def start_web(self, broker: str) -> None:
        # Production's gunicorn.conf.py (read from the working directory) sets workers & co.
        command = ["gunicorn", "postman_email.wsgi", "--bind", f"127.0.0.1:{self.web_port}"]
        command += ["--access-logfile", str(WORK_DIR / "logs" / f"access-{broker}.log")]
        self.processes.start("web", command, self.env(broker))
        url = f"http://127.0.0.1:{self.web_port}/healthz"

        def healthy() -> bool:
            self.processes.check("web")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout=60, what="gunicorn", interval=0.25)
        # Every worker answers once before anything is measured.
        wait_until(lambda: len(self.processes.tree("web")) > 1, timeout=30, what="web workers")
        self.results["web_workers"] = len(self.processes.tree("web")) - 1
        log(f"gunicorn on port {self.web_port}: {self.results['web_workers']} workers ({broker})")

    def web_peak_rss(self) -> float:
        return max((peak_rss_mb(p.pid) for p in self.processes.tree("web")[1:]), default=0.0)

    def start_worker(self, broker: str, processes: int) -> None:
        env = self.env(broker, WORKER_CONCURRENCY=str(processes))
        log_file = self.processes.log_dir / "worker.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        self.processes.start("worker", [sys.executable, "manage.py", "qcluster"], env)

        def running() -> bool:
            self.processes.check("worker")
            with log_file.open() as handle:
                handle.seek(offset)
                return "running." in handle.read()

        wait_until(running, timeout=60, what="the qcluster", interval=0.1)

    def stop_worker(self) -> None:
        # Everything it had to do is done (and recorded): no need to wait for a graceful stop.
        self.processes.stop("worker", timeout=3)

    def worker_peak_rss(self) -> dict[str, float]:
        peaks = [peak_rss_mb(p.pid) for p in self.processes.tree("worker")]
        return {"largest_mb": max(peaks, default=0.0), "total_mb": sum(peaks)}

    def purge(self, broker: str) -> None:
        """Empty the queue and the emails table between phases."""
        # The queue, with what says a task is waiting (PendingTask rows; the Redis key below).
        self.sql("TRUNCATE emails_email, emails_pendingtask, django_q_ormq, django_q_task CASCADE")
        if broker == "redis":
            command = ["redis-cli", "-p", str(self.redis_port), "FLUSHALL"]
            subprocess.run(command, check=True, capture_output=True, timeout=30)

    def analyze(self) -> None:
        """Statistics of the emails as the table now is. In production autovacuum keeps them
        current; a phase that has just filled the table did so faster than it comes round (or
        the server runs without it)."""
        self.sql("ANALYZE emails_email, emails_emailrecipient")

    def counts(self) -> tuple[int, int]:
        """(accepted, still pending) emails."""
        [(accepted, pending)] = self.sql(
            "SELECT count(*) FILTER (WHERE status = 'ACCEPTED'),"
            " count(*) FILTER (WHERE status = 'UNSENT' AND error_code IS NULL) FROM emails_email"
        )
        return accepted, pending

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    # --- phases --------------------------------------------------------------------------------

    def load(self, path: str, seconds: int, *, post: bool) -> dict:
        body = self.body_file if post else None
        if self.scale.warmup_seconds:
            wrk(self.url(path), seconds=self.scale.warmup_seconds, connections=8,
                key=self.key, body_file=body)  # fmt: skip
        before = self.cpu.sample()
        result = wrk(
            self.url(path),
            seconds=seconds,
            connections=self.scale.connections,
            key=self.key,
            body_file=body,
        )
        used = self.cpu.usage(before, self.cpu.sample())
        requests = max(1, result.requests)
        result.web_cpu_ms = 1000 * used.get("web", 0.0) / requests
        result.db_cpu_ms = 1000 * used["db"] / requests
        result.other_pct = used["other_pct"]
        log(
            f"{path}: {result.rps:.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f}"
            f" ms, non-2xx {result.non_2xx}, socket errors {result.socket_errors}; CPU per"
            f" request: web {result.web_cpu_ms:.2f} ms, db {result.db_cpu_ms:.2f} ms;"
            f" other sessions {result.other_pct:.0f}%"
        )
        return asdict(result)

    def ceilings(self) -> None:
        self.results["smtp_ceiling"] = self.smtp_ceiling()
        self.results["framework_ceiling"] = self.load(
            "/bench/ceiling", self.scale.ceiling_seconds, post=True
        )
        self.results["drf_floor"] = self.floor()

    # The machine's speed drifts (other sessions share it): each ratio compares a phase with the
    # ceiling or floor measured again right before it, not with the figures at the start.

    def smtp_ceiling(self) -> dict:
        """Raw SMTP measured twice: as the machine is, and with its cores kept awake; the
        ceiling is the better of the two (``cores_awake``)."""
        quiet, size = smtp_ceiling(self.smtp_port, self.scale.smtp_messages)
        with cores_awake():
            awake, _ = smtp_ceiling(self.smtp_port, self.scale.smtp_messages)
        log(
            f"raw SMTP: {quiet:.0f} messages/s as the machine is, {awake:.0f} with its cores kept"
            f" awake ({size} bytes each, one connection)"
        )
        return {
            "messages_per_second": max(quiet, awake),
            "quiet_messages_per_second": quiet,
            "awake_messages_per_second": awake,
            "message_bytes": size,
        }

    def floor(self) -> dict:
        return self.load("/bench/floor", self.scale.ceiling_seconds, post=True)

    def api(self, broker: str) -> None:
        phase = self.results["brokers"][broker]
        phase["floor"] = self.floor()
        profiles = self.start_profile(f"send-{broker}") if self.args.profile else []
        phase["send"] = self.load(SEND_PATH, self.scale.send_seconds, post=True)
        self.stop_profile(profiles, f"send-{broker}")
        # And right after: the send is compared with the mean of the two, which cancels a drift
        # of the machine's speed across the phase.
        phase["floor_after"] = self.floor()
        # The send phase filled the table from empty in seconds: with statistics of an empty
        # table the planner reads every email of the agency to sort them for a page of the
        # list (7-8 ms of database CPU per request instead of 0.4 ms).
        self.analyze()
        [(email_id,)] = self.sql("SELECT max(id) FROM emails_email")
        phase["get"] = self.load(
            f"/v1/transactional/email/{email_id}", self.scale.read_seconds, post=False
        )
        phase["list"] = self.load("/v1/transactional/email", self.scale.read_seconds, post=False)

    def worker(self, broker: str, processes: int) -> None:
        count = self.scale.worker_emails
        self.purge(broker)
        log(f"seeding {count} queued emails ({broker} broker)")
        seeder = [sys.executable, "-m", "bench.harness", "seed", str(count), str(self.body_file)]
        subprocess.run(
            seeder,
            cwd=BASE_DIR,
            env=self.env(broker, LOG_LEVEL="WARNING"),
            check=True,
            capture_output=True,
            timeout=600,
        )
        # Empty before the seeding in a run of this phase alone: the claim then cost the
        # database twice the CPU per email.
        self.analyze()
        log(f"worker with {processes} process(es): delivering {count} emails")
        started = time.monotonic()
        self.start_worker(broker, processes)
        deadline = started + 60 + count / 20

        def counted(done: Callable[[int, int], bool]) -> Callable[[], bool]:
            def check() -> bool:
                self.processes.check("worker")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not deliver {count} emails in time")
                return done(*self.counts())

            return check

        # CPU is counted from the first delivery on, so the cluster's start-up is left out.
        wait_until(counted(lambda accepted, _: accepted > 0), timeout=120, what="a delivery")
        before, accepted_before = self.cpu.sample(), self.counts()[0]
        log(f"  counting CPU from {accepted_before} accepted emails on")
        wait_until(counted(lambda _, pending: pending == 0), timeout=deadline - started + 5,
                   what="delivery", interval=0.2)  # fmt: skip
        wall = time.monotonic() - started
        # The qcluster's processes are alive until stopped: sample them first.
        used = self.cpu.usage(before, self.cpu.sample())
        rss = self.worker_peak_rss()
        self.stop_worker()
        accepted, _ = self.counts()
        measured = max(1, accepted - accepted_before)
        [(first, last)] = self.sql(
            "SELECT min(accepted_at), max(accepted_at) FROM emails_email WHERE status = 'ACCEPTED'"
        )
        span = (last - first).total_seconds() if first and last else 0.0
        rate = (accepted - 1) / span if span > 0 else float("nan")
        result = {
            "emails": count,
            "accepted": accepted,
            "emails_per_second": rate,
            "wall_seconds": wall,
            "worker_cpu_ms": 1000 * used.get("worker", 0.0) / measured,
            "db_cpu_ms": 1000 * used["db"] / measured,
            "sink_cpu_ms": 1000 * used.get("sink", 0.0) / measured,
            "other_pct": used["other_pct"],
            "rss": rss,
        }
        self.results["brokers"][broker][f"worker_{processes}"] = result
        log(
            f"worker x{processes}: {accepted}/{count} accepted, {rate:.0f} emails/s (first to"
            f" last acceptance; {wall:.1f} s from start); CPU per email: worker"
            f" {result['worker_cpu_ms']:.2f} ms, db {result['db_cpu_ms']:.2f} ms; other"
            f" sessions {used['other_pct']:.0f}%"
        )

    def end_to_end(self, broker: str) -> None:
        self.purge(broker)
        self.start_worker(broker, 2)
        rate, seconds = self.scale.e2e_rate, self.scale.e2e_seconds
        log(f"end to end: {rate} requests/s for {seconds} s, worker with 2 processes")
        before = self.cpu.sample()
        watch = AcceptanceWatch(f"{PG_SERVER}/{DB_NAME}", time.monotonic() + seconds + 120)
        watch.start()
        result = paced_posts(
            self.web_port, key=self.key, body=self.body_file.read_bytes(), rate=rate,
            seconds=seconds, on_created=watch.created.append,
        )  # fmt: skip
        watch.done.set()
        ids = [email_id for email_id, _, _ in result.emails]
        deadline = time.monotonic() + 60

        def delivered() -> bool:
            self.processes.check("worker")
            if time.monotonic() > deadline:
                raise RuntimeError("end to end: emails still pending 60 s after the last POST")
            [(pending,)] = self.sql(
                "SELECT count(*) FROM emails_email WHERE id = ANY(%s) AND status = 'UNSENT'"
                " AND error_code IS NULL",
                (ids,),
            )
            return pending == 0

        wait_until(delivered, timeout=65, what="end-to-end delivery", interval=0.2)
        used = self.cpu.usage(before, self.cpu.sample())
        watch.join(timeout=5)
        seen = dict(watch.seen)
        rows = self.sql(
            "SELECT id, extract(epoch FROM accepted_at), extract(epoch FROM created_at)"
            " FROM emails_email WHERE id = ANY(%s) AND status = 'ACCEPTED'",
            (ids,),
        )
        accepted = {row[0]: float(row[1]) for row in rows}
        created = {row[0]: float(row[2]) for row in rows}
        stamped = [accepted[i] - due for i, due, _ in result.emails if i in accepted]
        e2e = [seen[i] - due for i, due, _ in result.emails if i in accepted and i in seen]
        queued = [accepted[i] - created[i] for i, _, _ in result.emails if i in accepted]
        http_times = [elapsed for _, _, elapsed in result.emails]
        rss = self.worker_peak_rss()
        self.stop_worker()
        self.results["brokers"][broker]["e2e"] = {
            "rate": rate,
            "seconds": seconds,
            "sent": result.sent,
            "created": len(result.emails),
            "accepted": len(stamped),
            "observed": len(e2e),
            "p50_ms": median_ms(e2e),
            "p99_ms": percentile_ms(e2e, 0.99),
            "max_ms": max(e2e, default=float("nan")) * 1000,
            "stamped_p50_ms": median_ms(stamped),
            "stamped_p99_ms": percentile_ms(stamped, 0.99),
            "created_to_accepted_p50_ms": median_ms(queued),
            "created_to_accepted_p99_ms": percentile_ms(queued, 0.99),
            "http_p50_ms": median_ms(http_times),
            "http_p99_ms": percentile_ms(http_times, 0.99),
            "other_pct": used["other_pct"],
            "rss": rss,
        }
        log(
            f"end to end: {len(stamped)}/{result.sent} accepted, p50 {median_ms(e2e):.0f} ms, p99"
            f" {percentile_ms(e2e, 0.99):.0f} ms (by accepted_at: p50 {median_ms(stamped):.0f} ms,"
            f" p99 {percentile_ms(stamped, 0.99):.0f} ms; HTTP p50 {median_ms(http_times):.1f} ms,"
            f" p99 {percentile_ms(http_times, 0.99):.1f} ms); other sessions"
            f" {used['other_pct']:.0f}%"
        )

    # --- profiling (--profile) -----------------------------------------------------------------

    def start_profile(self, name: str) -> list[subprocess.Popen]:
        py_spy = shutil.which("py-spy", path=self.base_env["PATH"])
        if not py_spy:
            log("py-spy is not installed (pip install -r bench/requirements.txt): no profile")
            return []
        seconds = str(self.scale.send_seconds + self.scale.warmup_seconds)
        profiles = []
        for index, process in enumerate(self.processes.tree("web")[1:]):
            output = WORK_DIR / f"profile-{name}-{index}.txt"
            command = [py_spy, "record", "--pid", str(process.pid), "--format", "raw"]
            command += ["--rate", "50", "--duration", seconds, "--output", str(output)]
            profiles.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        return profiles

    @staticmethod
    def stop_profile(profiles: list[subprocess.Popen], name: str = "") -> None:
        for profile in profiles:
            try:
                profile.wait(timeout=30)
            except subprocess.TimeoutExpired:
                profile.kill()
        if profiles:
            summary = profile_summary(sorted(WORK_DIR.glob(f"profile-{name}-*.txt")))
            (WORK_DIR / f"profile-{name}.md").write_text(summary)
            log(f"profile of the web workers: var/bench/profile-{name}.md")

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        brokers = BROKERS if self.args.broker == "both" else (self.args.broker,)
        phases = set(self.args.only.split(",")) if self.args.only else set(PHASES)
        self.create_database()
        self.start_sink()
        if "redis" in brokers:
            self.start_redis()
        for number, broker in enumerate(brokers):
            self.results["brokers"][broker] = {}
            self.purge(broker)
            self.start_web(broker)
            if number == 0 and "ceilings" in phases:
                self.ceilings()
            if "api" in phases:
                self.api(broker)
            if "worker" in phases:
                self.results["brokers"][broker]["smtp_ceiling"] = self.smtp_ceiling()
                for processes in (1, 2):
                    self.worker(broker, processes)
            if "e2e" in phases:
                self.end_to_end(broker)
            self.results["brokers"][broker]["web_rss_mb"] = self.web_peak_rss()
            self.processes.stop("web")
        if self.args.full:
            self.admin_changelist()

    def admin_changelist(self) -> None:
        script = BENCH_DIR / "admin_changelist.py"
        if not script.exists():
            self.results["admin_changelist"] = "bench/admin_changelist.py does not exist yet"
            return
        log("bench/admin_changelist.py (--full)")
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=BASE_DIR,
            env=self.env("orm"),
            capture_output=True,
            text=True,
            timeout=900,
        )
        self.results["admin_changelist"] = (result.stdout + result.stderr).strip()

    def close(self) -> None:
        self.processes.stop_all()
        with contextlib.suppress(psycopg.Error):
            self.drop_database()


def profile_summary(files: list[Path], top: int = 60) -> str:
    """py-spy's raw stacks of the web workers as a table: each function's share of the samples
    that include it (inclusive), and of those where it was running itself (self)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            total += int(count)
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + int(count)
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
    lines = [f"# py-spy: {total} samples of the web workers", "", "| inclusive | self | function |"]
    lines.append("|---|---|---|")
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        share, self_share = 100 * count / max(1, total), 100 * own.get(frame, 0) / max(1, total)
        lines.append(f"| {share:.1f}% | {self_share:.1f}% | `{frame}` |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The report


def send_floor(data: dict) -> float:
    """The floor a broker's send phase is compared with: the mean of the floor measured right
    before it and right after it, so that a drift of the machine's speed across the phase
    (other sessions share it) cancels out."""
    return (data["floor"]["rps"] + data["floor_after"]["rps"]) / 2


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def report(results: dict, quick: bool, elapsed: float) -> str:
    scale = Scale(**results["scale"])
    title = "# Benchmark results"
    if quick:
        title += " (QUICK: scaled down for CI, the figures mean nothing)"
    lines = [
        title,
        "",
        f"- Run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, commit {git_commit()},"
        f" {elapsed:.0f} s in all",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}), Python"
        f" {platform.python_version()}, PostgreSQL {results.get('postgres', '?')}",
        f"- Web: gunicorn ({results.get('gunicorn', '?')}), {results.get('web_workers', '?')}"
        f" workers; worker: qcluster; SMTP sink: {results.get('sink', '?')}",
        f"- Load: wrk, 2 threads, {scale.connections} connections, the 5 KB HTML JSON body of"
        " bench/payloads; everything on 127.0.0.1",
        '- "other": the share of the machine\'s CPU that processes outside this run used during'
        " the measurement (other sessions on a shared machine); high values disturb the figures",
        "",
        "| measure | ORM broker | Redis broker | target |",
        "|---|---|---|---|",
    ]

    def shared(label: str, value: str) -> None:
        lines.append(f"| {label} | {value} | (the same: measured once, at the start) | |")

    def per_broker(label: str, cell: Callable[[dict], str], target: str = "") -> None:
        cells = []
        for broker in BROKERS:
            data = results["brokers"].get(broker)
            try:
                cells.append(cell(data) if data else "not run")
            except (KeyError, TypeError):
                cells.append("not run")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {target} |")

    def smtp_cell(ceiling: dict) -> str:
        return (
            f"{ceiling['messages_per_second']:.0f} messages/s (cores kept awake:"
            f" {ceiling['awake_messages_per_second']:.0f}; as the machine is:"
            f" {ceiling['quiet_messages_per_second']:.0f})"
        )

    def load_cell(load: dict) -> str:
        return (
            f"{load['rps']:.0f} req/s, p50 {load['p50_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms,"
            f" non-2xx {load['non_2xx']}; CPU/req web {load['web_cpu_ms']:.2f} ms,"
            f" db {load['db_cpu_ms']:.2f} ms; other {load['other_pct']:.0f}%"
        )

    if "framework_ceiling" in results:
        shared("**Ceiling**: Django JSON view (POST)", load_cell(results["framework_ceiling"]))
        shared("**Floor**: DRF, auth by 1 query + insert 1 row", load_cell(results["drf_floor"]))
        shared(
            "**Ceiling**: raw SMTP, one smtplib connection, best of 3 rounds each way",
            f"{smtp_cell(results['smtp_ceiling'])}"
            f" ({results['smtp_ceiling']['message_bytes'] / 1024:.1f} KB each)",
        )

    per_broker("Floor again, right before the send phase", lambda data: load_cell(data["floor"]))
    per_broker(
        "Floor again, right after the send phase", lambda data: load_cell(data["floor_after"])
    )

    def send(data: dict) -> str:
        load = data["send"]
        floor = send_floor(data)
        ratio = load["rps"] / floor if floor else float("nan")
        ok = (
            load["rps"] >= TARGET_SEND_RPS
            and load["p99_ms"] <= TARGET_SEND_P99_MS
            and load["non_2xx"] == 0
            and load["socket_errors"] == 0
            and ratio >= TARGET_SEND_VS_FLOOR
        )
        return f"{load_cell(load)}; **{ratio:.0%} of floor** ({floor:.0f} req/s) {_mark(ok)}"

    per_broker(
        f"**Send API**: POST, {scale.connections} connections, {scale.send_seconds} s",
        send,
        f"≥ {TARGET_SEND_RPS} req/s, p99 ≤ {TARGET_SEND_P99_MS} ms, no errors,"
        f" ≥ {TARGET_SEND_VS_FLOOR:.0%} of floor",
    )
    per_broker("GET /v1/transactional/email/{id}", lambda data: load_cell(data["get"]))
    per_broker("GET /v1/transactional/email (page of 10)", lambda data: load_cell(data["list"]))
    per_broker(
        "Raw SMTP again, right before the worker phases",
        lambda data: smtp_cell(data["smtp_ceiling"]),
    )
    for processes in (1, 2):

        def worker(data: dict, processes: int = processes) -> str:
            run = data[f"worker_{processes}"]
            ceiling = data["smtp_ceiling"]["messages_per_second"]
            share = run["emails_per_second"] / ceiling if ceiling else float("nan")
            text = (
                f"{run['emails_per_second']:.0f} emails/s, {run['accepted']}/{run['emails']}"
                f" ACCEPTED, **{share:.0%} of SMTP**; CPU/email worker"
                f" {run['worker_cpu_ms']:.2f} ms, db {run['db_cpu_ms']:.2f} ms;"
                f" other {run['other_pct']:.0f}%"
            )
            if processes == 2:
                ok = (
                    run["emails_per_second"] >= TARGET_WORKER_EPS
                    and share >= TARGET_WORKER_VS_SMTP
                    and run["accepted"] == run["emails"]
                )
                text += f" {_mark(ok)}"
            return text

        per_broker(
            f"**Worker**: {processes} process{'es' if processes > 1 else ''},"
            f" {scale.worker_emails} queued emails",
            worker,
            f"≥ {TARGET_WORKER_EPS} emails/s, ≥ {TARGET_WORKER_VS_SMTP:.0%} of SMTP"
            if processes == 2
            else "",
        )

    def e2e(data: dict) -> str:
        run = data["e2e"]
        ok = (
            run["p50_ms"] <= TARGET_E2E_P50_MS
            and run["p99_ms"] <= TARGET_E2E_P99_MS
            and run["accepted"] == run["sent"]
        )
        return (
            f"p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms,"
            f" {run['accepted']}/{run['sent']} ACCEPTED (by `accepted_at`: p50"
            f" {run['stamped_p50_ms']:.0f} ms, p99 {run['stamped_p99_ms']:.0f} ms; the POST"
            f" alone: p50 {run['http_p50_ms']:.0f} ms, p99 {run['http_p99_ms']:.0f} ms);"
            f" other {run['other_pct']:.0f}% {_mark(ok)}"
        )

    per_broker(
        f"**End to end**: POST → ACCEPTED at {scale.e2e_rate} req/s for {scale.e2e_seconds} s,"
        " 2 worker processes",
        e2e,
        f"p50 ≤ {TARGET_E2E_P50_MS} ms, p99 ≤ {TARGET_E2E_P99_MS} ms",
    )
    per_broker(
        "**Memory**: peak RSS of a web worker",
        lambda data: (
            f"{data['web_rss_mb']:.0f} MB {_mark(data['web_rss_mb'] <= TARGET_WEB_RSS_MB)}"
        ),
        f"≤ {TARGET_WEB_RSS_MB} MB",
    )
    per_broker(
        "Memory: qcluster with 2 workers, largest process / all its processes",
        lambda data: (
            f"{data['worker_2']['rss']['largest_mb']:.0f} MB /"
            f" {data['worker_2']['rss']['total_mb']:.0f} MB"
        ),
    )
    lines.append("")
    if "admin_changelist" in results:
        lines += ["## Admin changelist (bench/admin_changelist.py)", "", "```"]
        lines += [results["admin_changelist"], "```", ""]
    return "\n".join(lines)


def git_commit() -> str:
    def git(*args: str) -> str:
        try:
            result = subprocess.run(
                ["git", *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    # The results a previous run wrote are not a change to what is measured.
    changes = git(
        "status", "--porcelain", "--", ".", f":(exclude){RESULTS_DIR.relative_to(BASE_DIR)}"
    )
    return commit + (" with uncommitted changes" if changes else "")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def gunicorn_config() -> str:
    return "gunicorn.conf.py" if (BASE_DIR / "gunicorn.conf.py").exists() else "its defaults"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled down, for CI (< 2 min)")
    parser.add_argument("--broker", choices=["both", *BROKERS], default="both")
    parser.add_argument("--only", help=f"comma-separated phases to run, of {', '.join(PHASES)}")
    parser.add_argument("--profile", action="store_true", help="py-spy the web workers")
    parser.add_argument("--emails", type=int, help="queued emails for the worker phase")
    parser.add_argument(
        "--full", action="store_true", help="also run bench/admin_changelist.py, if present"
    )
    args = parser.parse_args(argv)
    for tool in ("wrk", "redis-server", "redis-cli"):
        if not shutil.which(tool):
            print(f"bench: {tool} is not installed (bench/install-tools installs what is missing)")
            return 1
    scale = QUICK if args.quick else FULL
    if args.emails:
        scale = replace(scale, worker_emails=args.emails)
    started = time.monotonic()
    log(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bench = Bench(scale, args)

    def terminated(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        bench.run()
    finally:
        bench.close()
    bench.results["sink"] = bench.sink
    bench.results["gunicorn"] = gunicorn_config()
    elapsed = time.monotonic() - started
    text = report(bench.results, args.quick, elapsed)
    # Only a complete, unprofiled run replaces the committed results; a QUICK, partial or
    # profiled one (py-spy slows the web workers it samples) goes to var/.
    partial = args.quick or args.only or args.broker != "both" or args.emails or args.profile
    out_dir = WORK_DIR if partial else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.md").write_text(text)
    (out_dir / "latest.json").write_text(json.dumps(bench.results, indent=2, default=str))
    print()
    print(text)
    log(f"done in {elapsed:.0f} s; written to {(out_dir / 'latest.md').relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
