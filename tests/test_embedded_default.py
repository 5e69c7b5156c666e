"""The embedded default, end to end: no configuration, SQLite, the ORM broker, the dev inbox.

Runs the processes of the Procfile (web, worker, inbox) with an environment that has nothing but
PATH, HOME, a private VAR_DIR and an EMAIL_URL on a free port, so it never touches the developer's
var/ or port 1025, then sends one email through the public API and waits for it to arrive.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator

import pytest

from tests.e2e import Service, port_open, request, venv_env, wait_for
from tests.smtp_peer import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path) -> Iterator[Service]:
    env = {**venv_env(tmp_path), "EMAIL_URL": f"smtp://127.0.0.1:{free_port()}"}
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
