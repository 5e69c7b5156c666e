"""Building the MIME message handed to the relay.

Django's ``EmailMultiAlternatives`` does the encoding and refuses CR/LF in any header (its
compat32 ``SafeMIME*`` classes raise ``BadHeaderError``), so a hostile subject, display name or
filename can never add a header. ``_Generator`` writes the message out as the standard library's
``BytesGenerator`` does, byte for byte, at a fraction of its cost.

Most emails are a text and an HTML part and nothing else, with headers that need no folding:
``_alternative_bytes`` writes those bytes directly, the very bytes the standard way writes (the
tests compare the two over many messages); a header value that is not already one plain line
is still made by Django's ``forbid_multi_line_headers``. Building and writing the message
objects was two fifths of the worker's time per email. Anything else (attachments, a body line
over 998 bytes, a header to fold) goes the standard way.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from email import encoders
from email.generator import NLCRE, BytesGenerator
from email.message import Message
from email.mime.base import MIMEBase
from email.policy import compat32
from email.utils import formatdate, parseaddr
from functools import lru_cache
from io import BytesIO

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import (
    RFC5322_EMAIL_LINE_LENGTH_LIMIT,
    SafeMIMEMultipart,
    forbid_multi_line_headers,
)

from emails.delivery.text import html_to_text
from emails.models import Email, EmailAttachment
from emails.tracking import with_open_pixel

EMAIL_ID_HEADER = "X-Postman-Email-Id"
# The longest header line written without folding (78).
_LINE_LIMIT = compat32.max_line_length
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
FALLBACK_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class BuiltMessage:
    mail_from: str
    recipients: list[str]
    message: bytes


@dataclass(frozen=True)
class Envelope:
    """The header fields of a message, as ``EmailMessage`` takes them; ``extra`` comes last, in
    its order."""

    subject: str
    from_email: str
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    extra: dict[str, str]

    def fields(self) -> list[tuple[str, str]]:
        """The fields in the order ``EmailMessage.message()`` sets them."""
        fields = [("Subject", self.subject), ("From", self.from_email), ("To", ", ".join(self.to))]
        if self.cc:
            fields.append(("Cc", ", ".join(self.cc)))
        if self.reply_to:
            fields.append(("Reply-To", ", ".join(self.reply_to)))
        return fields + list(self.extra.items())


@lru_cache(maxsize=1024)
def bare_address(value: str) -> str:
    """The address in a header value such as ``Housing Board <notify@hdb.gov.sg>``. Cached: the
    worker asks it of the same few senders for every email."""
    return parseaddr(value)[1]


def message_id_domain() -> str:
    return bare_address(settings.DEFAULT_FROM_EMAIL).rpartition("@")[2] or "localhost"


def make_message_id(email_id: int) -> str:
    """The Message-ID of email ``email_id``: the same on every attempt, never guessable.

    Being deterministic, a second hand-off of the same email (a crash after the relay's 250)
    carries the same Message-ID, so receivers and operators can recognise the duplicate. The HMAC
    makes the ids unforgeable: a Message-ID quoted back to us (a bounce, a complaint) can be
    checked to be one of ours.
    """
    mac = hmac.new(
        settings.SECRET_KEY.encode(), f"postman-email:message-id:{email_id}".encode(), "sha256"
    )
    return f"<{email_id}.{mac.hexdigest()[:16]}@{message_id_domain()}>"


def safe_filename(filename: str) -> str:
    # Control characters could break the header or fool a mail client; path separators could
    # make a naive client write outside its download folder.
    cleaned = _CONTROL_CHARS.sub("", filename).replace("/", "_").replace("\\", "_").strip()
    return cleaned.lstrip(".") or "attachment"


def _content_type(attachment: EmailAttachment) -> str:
    value = (attachment.content_type or "").strip().lower()
    return value if _CONTENT_TYPE.match(value) else FALLBACK_CONTENT_TYPE


def _read(attachment: EmailAttachment) -> bytes:
    with attachment.file.open("rb") as handle:
        return handle.read()


class _RelatedMessage(EmailMultiAlternatives):
    """``EmailMultiAlternatives`` that wraps the body in ``multipart/related`` with its inline
    parts, which is where clients look for ``cid:`` references::

        mixed ─ related ─ alternative ─ text/plain, text/html
              │         └ inline parts (Content-ID)
              └ attachments
    """

    def __init__(self, *args: object, inline_parts: list[MIMEBase], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.inline_parts = inline_parts

    def _create_message(self, msg):  # Django's hook; untyped upstream.
        body = self._create_alternatives(msg)
        if self.inline_parts:
            encoding = self.encoding or settings.DEFAULT_CHARSET
            related = SafeMIMEMultipart(_subtype="related", encoding=encoding)
            related.attach(body)
            for part in self.inline_parts:
                related.attach(part)
            body = related
        return self._create_attachments(body)


class _Generator(BytesGenerator):
    """``BytesGenerator`` with the same output, minus the work our messages never need.

    It writes a header that needs no folding or encoding (printable ASCII that fits the line)
    as it is, where the compat32 policy runs every header through ``email.header.Header``; it
    converts a body's line ends in one pass instead of a write per line; and it checks a new
    multipart boundary against the parts with a substring search instead of compiling a regular
    expression for each boundary. Everything else (long or non-ASCII headers, encoded bodies)
    goes the standard way. The worker builds one message per email: this was a third of it.
    """

    def _write_headers(self, msg: Message) -> None:
        for name, value in msg.raw_items():
            if isinstance(value, str) and _fits(name, value):
                self._fp.write(f"{name}: {value}{self._NL}".encode("ascii"))
            else:
                self._fp.write(self.policy.fold_binary(name, value))
        self.write(self._NL)

    def _write_lines(self, lines: str) -> None:
        if lines:
            self.write(NLCRE.sub(self._NL, lines))

    @classmethod
    def _make_boundary(cls, text: bytes | None = None) -> str:
        # The standard one is 19 random digits between runs of "=", made unique against a
        # regex of each candidate. A delimiter is "--" + boundary at the start of a line: a
        # boundary whose "--" form is nowhere in the text cannot be one. This one is short
        # enough for its Content-Type header to fit on one line, and "=_" can occur in neither
        # base64 nor quoted-printable text.
        while True:
            boundary = f"=_{secrets.token_hex(12)}"
            if text is None or f"--{boundary}".encode("ascii") not in text:
                return boundary


def _fits(name: str, value: str) -> bool:
    """Whether ``_Generator`` writes this header line as it is."""
    return value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= _LINE_LIMIT


def as_bytes(message: Message) -> bytes:
    """``message`` as the bytes to hand to the relay: CRLF line ends, no "From " mangling."""
    buffer = BytesIO()
    _Generator(buffer, mangle_from_=False).flatten(message, linesep="\r\n")
    return buffer.getvalue()


def _inline_part(attachment: EmailAttachment, content: bytes) -> MIMEBase:
    maintype, subtype = _content_type(attachment).split("/", 1)
    part = MIMEBase(maintype, subtype)
    part.set_payload(content)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "inline", filename=safe_filename(attachment.filename))
    # The send API's contract: the body's cid:N names attachment N (zero-based position).
    part.add_header("Content-ID", f"<{attachment.position}>")
    return part


def _text_part(content: str, subtype: str) -> bytes | None:
    """A ``text/{subtype}`` part as ``SafeMIMEText`` makes it and ``_Generator`` writes it: UTF-8,
    7bit or 8bit, CRLF line ends. None when Django would quoted-print it (a line over 998 bytes)
    or leave it out (empty)."""
    # Line ends as the generator writes them (NLCRE: CRLF, CR or LF); most text has only LF.
    lines = NLCRE.sub("\r\n", content) if "\r" in content else content.replace("\n", "\r\n")
    data = lines.encode()
    if not data or (
        len(data) > RFC5322_EMAIL_LINE_LENGTH_LIMIT
        and max(map(len, data.split(b"\r\n"))) > RFC5322_EMAIL_LINE_LENGTH_LIMIT
    ):
        return None
    encoding = "7bit" if data.isascii() else "8bit"
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + data


def _alternative_bytes(envelope: Envelope, text: str, html: str) -> bytes | None:
    """The ``multipart/alternative`` message of ``text`` and ``html`` written directly: what
    ``_standard_bytes`` writes for it without attachments, or None when a part or a header would
    need more than a plain line (the caller then goes the standard way). A header value that is
    not one plain line goes through Django's ``forbid_multi_line_headers`` (a line break is
    refused, non-ASCII encoded)."""
    lines = []
    for name, value in envelope.fields():
        # A value that is already one plain line is one that Django leaves as it is (the
        # Subject's ``Header(value).encode()`` included: a test holds it).
        if not _fits(name, value):
            name, value = forbid_multi_line_headers(name, value, settings.DEFAULT_CHARSET)
            if not _fits(name, value):
                return None
        lines.append(f"{name}: {value}\r\n")
    text_part, html_part = _text_part(text, "plain"), _text_part(html, "html")
    if text_part is None or html_part is None:
        return None
    boundary = _Generator._make_boundary(text_part + b"\r\n" + html_part)
    head = (
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        f"MIME-Version: 1.0\r\n{''.join(lines)}\r\n--{boundary}\r\n"
    )
    return b"".join(
        (
            head.encode("ascii"),
            text_part,
            f"\r\n--{boundary}\r\n".encode("ascii"),
            html_part,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )


def _standard_bytes(
    envelope: Envelope, text: str, html: str, attachments: Iterable[EmailAttachment]
) -> bytes:
    """The message written the standard way: Django's ``EmailMultiAlternatives``, then
    ``_Generator``."""
    inline: list[MIMEBase] = []
    message = _RelatedMessage(
        subject=envelope.subject,
        body=text,
        from_email=envelope.from_email,
        to=envelope.to,
        cc=envelope.cc,
        reply_to=envelope.reply_to,
        headers=envelope.extra,
        inline_parts=inline,
    )
    message.attach_alternative(html, "text/html")
    for attachment in attachments:
        content = _read(attachment)
        if attachment.inline:
            inline.append(_inline_part(attachment, content))
        else:
            message.attach(safe_filename(attachment.filename), content, _content_type(attachment))
    return as_bytes(message.message())


def build_message(
    *,
    email: Email,
    recipients: list[str],
    dropped: Collection[str] = (),
    attachments: Collection[EmailAttachment] = (),
) -> BuiltMessage:
    """The message for ``email`` and its SMTP envelope (``recipients``: the addresses to send to).

    The HTML part carries the open-tracking pixel unless ``email.disable_tracking``. Bcc
    addresses are only in the envelope. ``dropped`` cc addresses (blacklisted: their recipient
    rows carry an ``error_code``) are left out of the header as well. ``attachments`` are the
    email's attachment rows; the caller reads them (for a whole batch at once).
    """
    envelope = Envelope(
        subject=email.subject,
        from_email=email.sender or settings.DEFAULT_FROM_EMAIL,  # as EmailMessage does
        to=[email.recipient],
        cc=[address for address in email.cc if address not in dropped],
        reply_to=[email.reply_to] if email.reply_to else [],
        extra={
            "Date": formatdate(localtime=settings.EMAIL_USE_LOCALTIME),
            "Message-ID": email.message_id or make_message_id(email.id),
            EMAIL_ID_HEADER: str(email.id),
        },
    )
    # The text part is derived from the HTML without the pixel; the pixel goes only into the
    # HTML part, unless the client turned tracking off for this email.
    text = html_to_text(email.html)
    html = email.html if email.disable_tracking else with_open_pixel(email.html, email_id=email.id)
    message = None if attachments else _alternative_bytes(envelope, text, html)
    return BuiltMessage(
        mail_from=bare_address(email.sender),
        recipients=list(recipients),
        message=message or _standard_bytes(envelope, text, html, attachments),
    )
