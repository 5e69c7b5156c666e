"""The embedded default, end to end: no configuration, SQLite, the ORM broker, the dev inbox.

Runs the processes of the Procfile (web, worker, inbox) with an environment that has nothing but
PATH, HOME, a private VAR_DIR and an EMAIL_URL on a free port, so it never touches the developer's
var/ or port 1025, then sends one email through the public API and waits for it to arrive.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.smtp_peer import free_port

pytestmark = pytest.mark.slow

BASE_DIR = Path(__file__).resolve().parent.parent
T = TypeVar("T")


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
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start(self, name: str, *command: str) -> None:
        log = (self.root / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group: the worker's children stop with it
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.root / f'{name}.log').read_text()}" for name in self.processes
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, service: Service) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for name, process in service.processes.items():
            assert process.poll() is None, (
                f"{name} exited while waiting for {what}\n{service.logs()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{service.logs()}")
        time.sleep(0.2)


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
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def service(tmp_path) -> Iterator[Service]:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "VAR_DIR": str(tmp_path / "var"),
        "EMAIL_URL": f"smtp://127.0.0.1:{free_port()}",
    }
    running = Service(tmp_path, env)
    try:
        yield running
    finally:
        running.stop()


def test_embedded_default_sends_one_email_end_to_end(service, tmp_path):
    inbox_port = int(service.env["EMAIL_URL"].rsplit(":", 1)[1])
    web_port = free_port()
    mail_dir = tmp_path / "mail"

    service.run("python", "manage.py", "migrate", "--noinput")
    key = service.run("python", "manage.py", "create_api_key", "--email", "demo@demo.gov.sg")
    key = key.strip().splitlines()[-1]
    assert (tmp_path / "var" / "db.sqlite3").exists()

    service.start("inbox", "python", "manage.py", "devinbox", "--port", str(inbox_port),
                  "--dir", str(mail_dir))  # fmt: skip
    service.start("worker", "python", "manage.py", "qcluster")
    service.start("web", "gunicorn", "postman_email.wsgi", "--bind", f"127.0.0.1:{web_port}",
                  "--workers", "1", "--access-logfile", "-")  # fmt: skip
    wait_for(lambda: port_open(web_port), timeout=30, what="the web server", service=service)
    wait_for(lambda: port_open(inbox_port), timeout=30, what="the dev inbox", service=service)

    base = f"http://127.0.0.1:{web_port}/v1/transactional/email"
    status, sent = request(
        f"{base}/send",
        key,
        {"recipient": "someone@example.com", "subject": "Hello", "body": "<p>Hi <b>there</b></p>"},
    )
    assert status == 201, f"{sent}\n{service.logs()}"
    assert sent["status"] == "UNSENT"
    assert sent["error_code"] is None
    email_id = sent["id"]

    [eml] = wait_for(
        lambda: list(mail_dir.glob("*.eml")), timeout=30, what="an .eml file", service=service
    )
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["X-Postman-Email-Id"] == str(email_id)
    assert message["To"] == "someone@example.com"
    assert message["Subject"] == "Hello"

    def accepted() -> dict | None:
        status, body = request(f"{base}/{email_id}", key)
        assert status == 200, body
        return body if body["status"] == "ACCEPTED" else None

    shown = wait_for(accepted, timeout=30, what="status ACCEPTED", service=service)
    assert shown["accepted_at"] is not None
    assert shown["error_code"] is None
