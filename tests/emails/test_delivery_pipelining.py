"""Pipelined transactions against a relay that answers from a script: replies that aiosmtpd
(``tests/smtp_peer.py``) never gives, such as a 354 after a refused MAIL FROM, or a hang-up
in the middle of the replies."""

from __future__ import annotations

import socket
import threading

import pytest

from emails.delivery import smtp

GREETING = b"220 relay.example ESMTP\r\n"
EHLO = b"250-relay.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
HANG_UP = "hang up"


class ScriptedRelay:
    """Answers EHLO, RSET and QUIT itself; every other command gets the next scripted reply
    (``HANG_UP`` closes the connection). After a 354 it reads a message up to its final dot, and
    only a message that reached it counts as delivered."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.messages: list[bytes] = []
        self.commands: list[str] = []
        # What arrived of messages whose connection closed before their final dot.
        self.cut_off: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        with connection, connection.makefile("rb") as lines:
            connection.sendall(GREETING)
            for line in lines:
                command = line.decode().strip()
                self.commands.append(command)
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    connection.sendall(EHLO)
                    continue
                if verb in ("RSET", "QUIT"):
                    connection.sendall(b"250 OK\r\n" if verb == "RSET" else b"221 Bye\r\n")
                    if verb == "QUIT":
                        return
                    continue
                reply = self.replies.pop(0)
                if reply == HANG_UP:
                    return
                connection.sendall(f"{reply}\r\n".encode())
                if reply.startswith("354") and self._read_message(lines):
                    connection.sendall(f"{self.replies.pop(0)}\r\n".encode())

    def _read_message(self, lines) -> bool:
        """A message up to its final dot (True); one cut off before it is not delivered."""
        message = []
        while (line := lines.readline()) != b".\r\n":
            if not line:
                self.cut_off.append(b"".join(message))
                return False
            message.append(line)
        self.messages.append(b"".join(message))
        return True

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)


@pytest.fixture
def relay(settings):
    relays: list[ScriptedRelay] = []

    def start(*replies: str) -> ScriptedRelay:
        relays.append(ScriptedRelay(list(replies)))
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", relays[-1].port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 5
        return relays[-1]

    smtp.close_connection()
    yield start
    smtp.close_connection()
    for scripted in relays:
        scripted.close()


def send(**overrides):
    arguments = {
        "mail_from": "notify@hdb.gov.sg",
        "recipients": ["citizen@example.com"],
        "message": b"Subject: Hello\r\n\r\nHello\r\n",
    }
    return smtp.send(**(arguments | overrides))


def test_the_commands_go_in_one_write_and_the_message_after_the_354(relay):
    scripted = relay("250 OK", "250 OK", "250 OK", "354 Go ahead", "250 Ok queued as 7")

    handoff = send(recipients=["citizen@example.com", "officer@example.com"])

    assert handoff.accepted == ["citizen@example.com", "officer@example.com"]
    assert str(handoff.reply) == "250 Ok queued as 7"
    assert scripted.commands[1:4] == [
        "mail FROM:<notify@hdb.gov.sg>",
        "rcpt TO:<citizen@example.com>",
        "rcpt TO:<officer@example.com>",
    ]
    assert scripted.messages == [b"Subject: Hello\r\n\r\nHello\r\n"]


def test_a_relay_that_hangs_up_after_refusing_mail_from_defers_with_its_reply(relay):
    scripted = relay("421 4.3.2 Service shutting down", HANG_UP)

    with pytest.raises(smtp.TransientError, match=r"^421 4\.3\.2 Service shutting down$"):
        send()

    assert scripted.messages == []
    assert smtp._connection is None


def test_a_relay_that_hangs_up_after_accepting_mail_from_is_a_transient_failure(relay):
    scripted = relay("250 OK", HANG_UP)

    with pytest.raises(smtp.TransientError, match="SMTPServerDisconnected"):
        send()

    assert scripted.messages == []
    assert smtp._connection is None


def test_a_refused_mail_from_sends_nothing_even_if_the_relay_opens_data(relay):
    scripted = relay("550 5.7.1 Sender rejected", "503 5.5.1 No sender", "354 Go ahead")

    with pytest.raises(smtp.PermanentError, match=r"^550 5\.7\.1 Sender rejected$"):
        send()

    # The connection is dropped in DATA, with nothing written after it (an RSET or a QUIT
    # there would be message text): nothing was delivered.
    assert smtp._connection is None
    scripted.close()
    assert (scripted.messages, scripted.cut_off) == ([], [b""])


def test_no_accepted_recipient_sends_nothing_even_if_the_relay_opens_data(relay):
    scripted = relay("250 OK", "550 5.1.1 No such user", "354 Go ahead")

    handoff = send()

    assert handoff.accepted == []
    assert str(handoff.refused["citizen@example.com"]) == "550 5.1.1 No such user"
    assert smtp._connection is None
    scripted.close()
    assert (scripted.messages, scripted.cut_off) == ([], [b""])


def test_a_refused_data_after_accepted_recipients_is_the_transactions_failure(relay):
    scripted = relay("250 OK", "250 OK", "451 4.3.0 Try again later")

    with pytest.raises(smtp.TransientError, match=r"^451 4\.3\.0 Try again later$"):
        send()

    assert scripted.messages == []
    assert scripted.commands[-1] == "rset"  # the connection is kept for the next email
    assert smtp._connection is not None
