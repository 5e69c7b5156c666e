"""The development inbox (``manage.py devinbox``), run as the Procfile runs it: a process."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.smtp_peer import free_port

BASE_DIR = Path(__file__).resolve().parents[2]


def wait_for_port(port: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def devinbox(tmp_path):
    port = free_port()
    mail_dir = tmp_path / "mail"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "devinbox", "--port", str(port), "--dir", str(mail_dir)],
        cwd=BASE_DIR,
        env={**os.environ, "VAR_DIR": str(tmp_path / "var")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, timeout=20)
        yield process, port, mail_dir
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_devinbox_stores_each_message_as_an_eml_file_in_arrival_order(devinbox):
    process, port, mail_dir = devinbox

    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("a@hdb.gov.sg", ["b@example.com"], b"Subject: First\r\n\r\nOne\r\n")
        client.sendmail(
            "a@hdb.gov.sg",
            ["b@example.com", "hidden@example.com"],
            b"Subject: Second\r\n\r\nTwo\r\n",
        )

    first, second = sorted(mail_dir.glob("*.eml"))
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in (first, second)
    ]
    assert [m["Subject"] for m in messages] == ["First", "Second"]
    assert messages[1]["Return-Path"] == "<a@hdb.gov.sg>"
    assert messages[1]["X-Envelope-To"] == "b@example.com, hidden@example.com"
    assert messages[1].get_content().strip() == "Two"
    assert list(mail_dir.glob("*.part")) == []

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    assert output.count("Received ") == 2
    assert str(second) in output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_devinbox_stops_cleanly_on_a_signal(devinbox, signum):
    process, _, _ = devinbox

    process.send_signal(signum)

    assert process.wait(timeout=10) == 0
    output = process.stdout.read()
    assert "Development inbox stopped" in output
    assert "Traceback" not in output
