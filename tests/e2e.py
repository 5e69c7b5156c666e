"""Running the real service as subprocesses (web, workers, inbox) for end-to-end tests and the
chaos script: process groups with their logs in files, bounded waits, a private PostgreSQL
database, and the public API over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postman_email"
T = TypeVar("T")


class ServiceError(AssertionError):
    """A process died or a wait ran out; the message carries every process's log."""


class Service:
    """The subprocesses of one run, each in its own process group, with their logs in files."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}

    def run(self, *command: str) -> str:
        result = subprocess.run(
            command, cwd=BASE_DIR, env=self.env, capture_output=True, text=True, timeout=180
        )
        if result.returncode != 0:
            raise ServiceError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, name: str, *command: str, env: dict[str, str] | None = None) -> None:
        log = (self.root / f"{name}.log").open("a")
        self.processes[name] = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group: the worker's children stop with it
        )

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.processes)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group of ``name`` (a machine crash for SIGKILL)."""
        os.killpg(self.processes[name].pid, sig)

    def wait_exit(self, name: str, timeout: float) -> int:
        try:
            return self.processes[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{name} did not exit within {timeout} s\n{self.logs()}") from None

    def forget(self, name: str) -> None:
        """Stop watching ``name`` (it exited on purpose)."""
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        # SIGTERM to each main process only, as docs/operations.md prescribes: gunicorn and
        # django-q2 then stop their children gracefully. (A SIGTERM to a django-q2 process group
        # leaves its main process hanging; the SIGKILL below is the backstop.)
        for process in self.processes.values():
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Whatever is left of the group (a worker orphaned by its main process).
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    service: Service,
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something truthy; fail if a process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for name, process in service.processes.items():
            if process.poll() is not None:
                raise ServiceError(f"{name} exited while waiting for {what}\n{service.logs()}")
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout} s waiting for {what}\n{service.logs()}")
        time.sleep(interval)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def request(url: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def venv_env(root: Path) -> dict[str, str]:
    """A minimal environment: the venv's programs first, HOME and VAR_DIR under ``root``."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(root),
        "VAR_DIR": str(root / "var"),
    }


@contextmanager
def scratch_database(base_url: str | None = None) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``base_url`` (default: DATABASE_URL's),
    dropped afterwards. Yields its URL."""
    parts = urlsplit(base_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    name = f"{parts.path.lstrip('/') or 'postman'}_e2e_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql(database_url: str, query: str, *params: object) -> list[tuple]:
    url = urlunsplit(urlsplit(database_url)._replace(scheme="postgresql"))
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(query, params).fetchall()
