"""A real SMTP peer for tests: an aiosmtpd server on 127.0.0.1 that records what it receives.

It answers like a relay and can be told to refuse: ``rcpt_replies`` per address (``"550 5.1.1
No such user"``, ``"451 4.3.0 Try again"``), ``mail_reply`` / ``data_reply`` for the whole
transaction, ``drop_at_mail`` to close the connection at MAIL FROM, or ``stop()`` to be down
(connection refused). ``accepted_reply`` replaces the 250
to DATA (e.g. Amazon SES's ``"250 Ok <message id>"``) and ``data_delay`` delays it (a message
is recorded after the delay, before the reply). ``on_rcpt`` and ``on_data`` are called from
the server's thread when a RCPT or a complete DATA arrives (before the reply), for tests that
need something to happen mid-transaction. It offers PIPELINING, as real relays do, unless
``pipelining`` is turned off (aiosmtpd reads pipelined commands one after the other either way);
``commands_in_one_read`` counts the transactions whose MAIL FROM, RCPT TOs and DATA arrived
together.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# aiosmtpd logs every command at INFO: keep failing tests' output readable.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    # time.monotonic() when the message was complete (before the reply to DATA was sent).
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass
class PeerHandler:
    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    mail_reply: str | None = None
    data_reply: str | None = None
    accepted_reply: str | None = None
    # Seconds between receiving a message and answering DATA, without blocking other sessions.
    data_delay: float = 0
    on_rcpt: Callable[[str], None] | None = None
    on_data: Callable[[], None] | None = None
    connections: int = 0
    noops: int = 0
    # How many of the next MAIL FROMs are answered by closing the connection.
    drop_at_mail: int = 0
    pipelining: bool = True
    commands_in_one_read: int = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # What the client sent after MAIL FROM and the peer has read but not handled yet.
        if b"\r\nDATA\r\n" in bytes(server._reader._buffer).upper():
            self.commands_in_one_read += 1
        if self.drop_at_mail:
            self.drop_at_mail -= 1
            server.transport.close()
            return "421 4.4.2 Closing"
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.on_rcpt is not None:
            self.on_rcpt(address)
        if address.lower() in self.rcpt_replies:
            return self.rcpt_replies[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.on_data is not None:
            self.on_data()
        if self.data_reply:
            return self.data_reply
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=envelope.original_content,
            )
        )
        return self.accepted_reply or f"250 Ok queued as peer-{len(self.received)}"


class _CountingSMTP(SMTP):
    def connection_made(self, transport) -> None:
        self.event_handler.connections += 1
        super().connection_made(transport)

    async def smtp_NOOP(self, arg: str) -> None:
        self.event_handler.noops += 1
        await super().smtp_NOOP(arg)


class _PeerController(Controller):
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


class SmtpPeer:
    def __init__(self) -> None:
        self.port = free_port()
        self.handler = PeerHandler()
        self._controller: _PeerController | None = None

    def start(self) -> None:
        self._controller = _PeerController(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        # The controller's own readiness probe is a connection too; count only the client's.
        self.handler.connections = 0

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def connections(self) -> int:
        return self.handler.connections

    def refuse_rcpt(self, address: str, reply: str) -> None:
        self.handler.rcpt_replies[address.lower()] = reply
