"""The connection to the SMTP relay and one SMTP transaction per email.

smtplib is used directly rather than Django's SMTP backend, which reports a whole message as sent
or failed and hides the per-recipient replies we need (a refused cc must not bounce the email).

Each worker process keeps one connection open across emails (django-q2 runs every task of a worker
in the same process, one at a time, so a module-level connection is never shared). Relays close
idle connections: one that sat idle for ``IDLE_CHECK_SECONDS`` is checked with NOOP before reuse,
and one found closed at the first command of a transaction (``MAIL FROM``, before the relay has
taken anything) is replaced and the transaction started again, once.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail.utils import DNS_NAME

logger = logging.getLogger(__name__)

ACCEPTED_RCPT_CODES = (250, 251)
# A connection used more recently than this is reused without a NOOP round trip first.
IDLE_CHECK_SECONDS = 5.0

_connection: smtplib.SMTP | None = None
_last_used = 0.0


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @classmethod
    def of(cls, code: int, text: bytes | str) -> Reply:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return cls(code=code, text=" ".join(text.split()))


@dataclass(frozen=True)
class Handoff:
    """The relay's answer to one transaction."""

    accepted: list[str]
    refused: dict[str, Reply] = field(default_factory=dict)
    # The final reply to DATA (e.g. "250 Ok queued as ..."); None if no recipient was accepted.
    reply: Reply | None = None


class HandoffError(Exception):
    """The relay did not take the message for any recipient."""


class TransientError(HandoffError):
    """Connection trouble, a timeout or a 4xx for the whole transaction: try again later."""


class Aborted(HandoffError):
    """The caller asked to stop (the worker is shutting down) before the message was sent."""


class _ClosedByRelay(Exception):
    """The relay had closed a reused connection: nothing was sent, start again on a new one."""


class PermanentError(HandoffError):
    """A 5xx to MAIL FROM or DATA: the message itself is refused, retrying cannot help."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def _open() -> smtplib.SMTP:
    host, port, timeout = settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT
    # Django caches the FQDN; smtplib would otherwise resolve it again on every connect.
    local_hostname = DNS_NAME.get_fqdn()
    if settings.EMAIL_USE_SSL:
        connection: smtplib.SMTP = smtplib.SMTP_SSL(
            host,
            port,
            local_hostname=local_hostname,
            timeout=timeout,
            context=ssl.create_default_context(),
        )
    else:
        connection = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=timeout)
    try:
        connection.ehlo()
        if settings.EMAIL_USE_TLS:
            connection.starttls(context=ssl.create_default_context())
            connection.ehlo()
        if settings.EMAIL_HOST_USER:
            connection.login(settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD)
    except BaseException:
        _quietly_close(connection)
        raise
    logger.info("Connected to SMTP relay %s:%s", host, port)
    return connection


def _quietly_close(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


def close_connection() -> None:
    """Close this process's relay connection, if any (tests, shutdown)."""
    global _connection
    if _connection is not None:
        _quietly_close(_connection)
        _connection = None


def get_connection() -> smtplib.SMTP:
    """This process's relay connection: the open one if it was used lately or still answers
    NOOP, else a new one."""
    global _connection
    if _connection is not None:
        if time.monotonic() - _last_used < IDLE_CHECK_SECONDS:
            return _connection
        try:
            if _connection.noop()[0] == 250:
                return _connection
        except (smtplib.SMTPException, OSError):
            pass
        close_connection()
    _connection = _open()
    return _connection


def _mail_options(connection: smtplib.SMTP, message: bytes) -> list[str]:
    options = []
    if connection.does_esmtp:
        if connection.has_extn("size"):
            options.append(f"SIZE={len(message)}")
        if connection.has_extn("8bitmime") and not message.isascii():
            options.append("BODY=8BITMIME")
    return options


def _reset(connection: smtplib.SMTP) -> None:
    # Reset the transaction so the connection can carry the next email; a relay that answered
    # 421 has already hung up, and the next email will open a new connection.
    try:
        connection.rset()
    except (smtplib.SMTPException, OSError):
        close_connection()


def _refuse(connection: smtplib.SMTP, reply: Reply) -> HandoffError:
    _reset(connection)
    return PermanentError(reply) if reply.permanent else TransientError(str(reply))


def _transaction(
    connection: smtplib.SMTP,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    abort: Callable[[], bool],
) -> Handoff:
    try:
        reply = Reply.of(*connection.mail(mail_from, _mail_options(connection, message)))
    except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
        raise _ClosedByRelay from exc
    if reply.code != 250:
        raise _refuse(connection, reply)
    accepted: list[str] = []
    refused: dict[str, Reply] = {}
    for address in recipients:
        code, text = connection.rcpt(address)
        if code in ACCEPTED_RCPT_CODES:
            accepted.append(address)
        else:
            refused[address] = Reply.of(code, text)
    if not accepted:
        _reset(connection)
        return Handoff(accepted=[], refused=refused)
    # The last moment to back out: until DATA ends, the relay has taken nothing.
    if abort():
        _reset(connection)
        raise Aborted("stopped before DATA")
    try:
        reply = Reply.of(*connection.data(message))
    except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
        raise _refuse(connection, Reply.of(exc.smtp_code, exc.smtp_error))
    if reply.code != 250:
        raise _refuse(connection, reply)
    return Handoff(accepted=accepted, refused=refused, reply=reply)


def _never() -> bool:
    return False


def send(
    *,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    abort: Callable[[], bool] = _never,
) -> Handoff:
    """Hand ``message`` to the relay for ``recipients``.

    ``abort`` is asked right before DATA, the point of no return; if it says yes, the
    transaction is reset, ``Aborted`` raised, and the relay has taken nothing.

    Returns the accepted and the refused recipients with their replies. Raises
    ``PermanentError`` when the relay refuses the message itself (5xx to MAIL FROM or DATA) and
    ``TransientError`` for anything worth retrying: no connection, a timeout, a dropped
    connection, a 4xx to MAIL FROM or DATA, failed authentication (an operator can fix it).
    """
    global _last_used
    try:
        reused = _connection is not None
        connection = get_connection()
        try:
            handoff = _transaction(connection, mail_from, recipients, message, abort)
        except _ClosedByRelay:
            close_connection()
            if not reused:
                raise
            connection = get_connection()
            handoff = _transaction(connection, mail_from, recipients, message, abort)
        _last_used = time.monotonic()
        return handoff
    except HandoffError:
        _last_used = time.monotonic()
        raise
    except _ClosedByRelay as exc:
        close_connection()
        raise TransientError(f"Connection closed by the relay: {exc.__cause__}") from exc
    except smtplib.SMTPResponseException as exc:
        close_connection()
        raise TransientError(str(Reply.of(exc.smtp_code, exc.smtp_error))) from exc
    except (smtplib.SMTPException, OSError) as exc:
        # The connection is in an unknown state (half a transaction, a dead socket): drop it.
        close_connection()
        raise TransientError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
