"""The development inbox: an SMTP sink that keeps every message as an .eml file.

The embedded default delivers to it (EMAIL_URL defaults to smtp://127.0.0.1:1025), so a developer
can open what the service sent in any mail client. Never expose it beyond localhost: it accepts
mail for anyone from anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

logger = logging.getLogger("emails.devinbox")
# aiosmtpd logs every SMTP command at INFO; one line per message (ours) is what a developer wants.
logging.getLogger("mail.log").setLevel(logging.WARNING)


class MaildirHandler:
    """Writes each message to ``<directory>/<UTC time>-<pid>-<n>.eml``: names sort by arrival."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counter = itertools.count(1)

    def path_for(self, received: datetime) -> Path:
        stamp = received.strftime("%Y%m%dT%H%M%S.%fZ")
        return self.directory / f"{stamp}-{os.getpid()}-{next(self.counter):06d}.eml"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # Like a local delivery agent, record the envelope (Bcc is visible nowhere else).
        trace = (
            f"Return-Path: <{envelope.mail_from}>\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        content = envelope.original_content or b""
        path = self.path_for(datetime.now(UTC))
        # Write under a temporary name and rename, so a reader never sees half a message.
        partial = path.with_suffix(".part")
        partial.write_bytes(trace + content)
        partial.replace(path)
        logger.info(
            "Received %d bytes from %s for %s -> %s",
            len(content),
            envelope.mail_from,
            ", ".join(envelope.rcpt_tos),
            path,
        )
        return "250 Message accepted for delivery"


async def serve(*, host: str, port: int, directory: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    handler = MaildirHandler(directory)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="devinbox.localhost"), host=host, port=port
    )
    logger.info("Development inbox listening on %s:%s, saving to %s", host, port, directory)
    try:
        await stop.wait()
    finally:
        server.close()
        # Newer Pythons wait here for open client connections (a worker keeps one): bound it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=2)
        logger.info("Development inbox stopped")


class Command(BaseCommand):
    help = "Run the development SMTP inbox: every message received is saved as an .eml file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="Where to store messages (default: VAR_DIR/mail).",
        )

    def handle(self, *args: object, **options: object) -> None:
        directory = options["dir"] or Path(settings.VAR_DIR) / "mail"
        directory.mkdir(parents=True, exist_ok=True)
        asyncio.run(serve(host=options["host"], port=options["port"], directory=directory))
