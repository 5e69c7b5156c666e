"""The connection to the SMTP relay and one SMTP transaction per email.

smtplib is used directly rather than Django's SMTP backend, which reports a whole message as sent
or failed and hides the per-recipient replies we need (a refused cc must not bounce the email).

Each worker process keeps one connection open across emails (django-q2 runs every task of a worker
in the same process, one at a time, so a module-level connection is never shared). Relays close
idle connections: one that sat idle for ``IDLE_CHECK_SECONDS`` is checked with NOOP before reuse,
and one found closed at the first command of a transaction (``MAIL FROM``, before the relay has
taken anything) is replaced and the transaction started again, once.

A relay that offers PIPELINING (RFC 2920; Postfix and Exim do by default) gets MAIL FROM, every
RCPT TO and DATA in one write, and their replies are read after: two round trips per email
instead of four. Each round trip waits for the relay and wakes the worker again, on both sides.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail.utils import DNS_NAME

logger = logging.getLogger(__name__)

ACCEPTED_RCPT_CODES = (250, 251)
# A connection used more recently than this is reused without a NOOP round trip first.
IDLE_CHECK_SECONDS = 5.0

# A line of the message that starts with a dot gets another one (RFC 5321 4.5.2).
_LEADING_DOT = re.compile(rb"(?m)^\.")
# Addresses that smtplib.quoteaddr (email.utils.parseaddr, a tenth of a transaction's CPU) would
# return unchanged between angle brackets: dot-atoms of the common characters.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)

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


def close_connection(*, graceful: bool = True) -> None:
    """Close this process's relay connection, if any (tests, shutdown). ``graceful=False``
    closes the socket without QUIT: in the middle of DATA, QUIT would be message text, and a
    relay that hung up hears nothing."""
    global _connection
    if _connection is not None:
        if graceful:
            _quietly_close(_connection)
        else:
            _connection.close()
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


def _refused(reply: Reply) -> HandoffError:
    return PermanentError(reply) if reply.permanent else TransientError(str(reply))


def _refuse(connection: smtplib.SMTP, reply: Reply) -> HandoffError:
    _reset(connection)
    return _refused(reply)


def _sorted_recipients(
    recipients: list[str], replies: list[Reply]
) -> tuple[list[str], dict[str, Reply]]:
    """The recipients the relay accepted, and the refused ones with their replies to RCPT TO."""
    accepted: list[str] = []
    refused: dict[str, Reply] = {}
    for address, reply in zip(recipients, replies, strict=True):
        if reply.code in ACCEPTED_RCPT_CODES:
            accepted.append(address)
        else:
            refused[address] = reply
    return accepted, refused


def _transaction(
    connection: smtplib.SMTP,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    abort: Callable[[], bool],
) -> Handoff:
    if connection.does_esmtp and connection.has_extn("pipelining"):
        return _pipelined_transaction(connection, mail_from, recipients, message, abort)
    try:
        reply = Reply.of(*connection.mail(mail_from, _mail_options(connection, message)))
    except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
        raise _ClosedByRelay from exc
    if reply.code != 250:
        raise _refuse(connection, reply)
    accepted, refused = _sorted_recipients(
        recipients, [Reply.of(*connection.rcpt(address)) for address in recipients]
    )
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


def _quote(address: str) -> str:
    """``smtplib.quoteaddr(address)``, without parsing the plain addresses."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _command(verb: str, address: str, options: Sequence[str] = ()) -> str:
    """One command line, as smtplib's ``mail``/``rcpt`` write it."""
    line = " ".join([f"{verb}:{_quote(address)}", *options])
    if "\r" in line or "\n" in line:
        raise ValueError("command and arguments contain prohibited newline characters")
    return f"{line}\r\n"


def _pipelined_transaction(
    connection: smtplib.SMTP,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    abort: Callable[[], bool],
) -> Handoff:
    """``_transaction`` with MAIL FROM, the RCPT TOs and DATA sent together (RFC 2920), then
    their replies read in order. Nothing is taken until the message's final dot: the replies
    decide whether it is sent at all."""
    commands = [_command("mail FROM", mail_from, _mail_options(connection, message))]
    commands += [_command("rcpt TO", address) for address in recipients]
    commands.append("data\r\n")
    replies: list[Reply] = []
    try:
        connection.send("".join(commands))
        while len(replies) < len(commands):
            replies.append(Reply.of(*connection.getreply()))
    except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
        if not replies:
            raise _ClosedByRelay from exc
        # The relay hung up after refusing a command (a 421): its reply says why.
        if replies[-1].code >= 400:
            close_connection(graceful=False)
            raise _refused(replies[-1]) from exc
        raise
    mail, *rcpts, data = replies
    if mail.code != 250:
        if data.code == 354:
            close_connection(graceful=False)  # a relay that opened DATA anyway
        else:
            _reset(connection)
        raise _refused(mail)
    accepted, refused = _sorted_recipients(recipients, rcpts)
    if data.code != 354:
        if not accepted:
            _reset(connection)
            return Handoff(accepted=[], refused=refused)
        raise _refuse(connection, data)
    # The relay waits for the message: the last moment to back out. A DATA that never ends
    # delivers nothing, and the connection cannot carry another transaction.
    if not accepted or abort():
        close_connection(graceful=False)
        if accepted:
            raise Aborted("stopped before the message")
        return Handoff(accepted=[], refused=refused)
    content = message
    if content.startswith(b".") or b"\n." in content:
        content = _LEADING_DOT.sub(b"..", content)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    connection.send(content + b".\r\n")
    reply = Reply.of(*connection.getreply())
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
