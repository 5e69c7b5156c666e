"""Validation of a send request, with the reference API's messages (SPEC §4).

The reference validates with Joi and reports only the first error, in schema order, with unknown
fields last; clients match these messages, so they are reproduced to the letter. JSON, urlencoded
and multipart bodies go through the same rules: a form field is a list of strings, a JSON field
any JSON value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from emails import attachments as att
from emails.addresses import Mailbox, default_from_addresses, is_valid_address, parse_mailbox
from emails.api import errors
from emails.api.errors import ApiError, validation_error
from emails.models import Classification

MAX_BODY_BYTES = 1024 * 1024
MAX_CC_BCC = 49
MAX_TAG_LENGTH = 255
ALLOWED_FIELDS = (
    "recipient", "subject", "body", "from", "reply_to", "reply-to", "cc", "bcc",
    "classification", "tag", "disable_tracking", "attachments",
)  # fmt: skip
_MISSING = object()


@dataclass
class SendInput:
    recipient: str
    subject: str
    body: str
    sender: Mailbox | None  # None: the default from address
    reply_to: str | None
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    classification: str | None = None
    tag: str | None = None
    disable_tracking: bool = False
    attachments: list[att.Attachment] = field(default_factory=list)
    raw_from: str | None = None
    raw_reply_to: str | None = None

    @property
    def params(self) -> dict:
        """The ``params`` of the email object: the input as the client sent it."""
        params = {"subject": self.subject, "body": self.body}
        params["from"] = self.raw_from if self.raw_from is not None else settings.DEFAULT_FROM_EMAIL
        if self.raw_reply_to is not None:
            params["reply_to"] = self.raw_reply_to
        return params


class _Fields:
    """Uniform access to a QueryDict (form bodies) or a dict (JSON bodies)."""

    def __init__(self, data) -> None:
        self.data = data
        self.is_form = hasattr(data, "getlist")

    def names(self) -> list[str]:
        return list(self.data)

    def get(self, name: str):
        """One value; a repeated form field comes back as a list (and so fails type checks)."""
        if name not in self.data:
            return _MISSING
        if self.is_form:
            values = self.data.getlist(name)
            return values[0] if len(values) == 1 else values
        return self.data[name]

    def get_list(self, name: str) -> list:
        return self.data.getlist(name) if self.is_form else [self.data[name]]


def _string(fields: _Fields, name: str, *, required: bool = False, allow_empty: bool = False):
    value = fields.get(name)
    if value is _MISSING or (value is None and not required):
        if required:
            raise validation_error(f'"{name}" is required')
        return None
    if not isinstance(value, str):
        raise validation_error(f'"{name}" must be a string')
    if not value and not allow_empty:
        raise validation_error(f'"{name}" is not allowed to be empty')
    return value


def _email(fields: _Fields, name: str, *, required: bool = False, trim: bool = False):
    value = _string(fields, name, required=required)
    if value is None:
        return None
    if trim:
        value = value.strip()
    if not is_valid_address(value):
        raise validation_error(f'"{name}" must be a valid email')
    return value.lower()


def _body(fields: _Fields) -> str:
    value = fields.get("body")
    if not isinstance(value, str) or not value or len(value.encode()) > MAX_BODY_BYTES:
        raise validation_error(errors.BODY_INVALID)
    return value


def _address_list(fields: _Fields, name: str) -> list[str]:
    """cc/bcc: a JSON array, a JSON-stringified array, or (in forms) repeated fields."""
    if fields.get(name) is _MISSING:
        return []
    values = fields.get_list(name)
    if len(values) == 1 and isinstance(values[0], str):
        text = values[0]
        try:
            decoded = json.loads(text)
        except ValueError:
            if not is_valid_address(text):
                raise validation_error(
                    f'"{name}" failed custom validation because '
                    f"{name} must be a valid array or stringified array."
                )
            decoded = [text]  # one occurrence of a repeatable form field
        if not isinstance(decoded, list):
            raise validation_error(
                f'"{name}" failed custom validation because '
                f"{name} must be a valid stringified array"
            )
        values = decoded
    elif len(values) == 1 and isinstance(values[0], list):
        values = values[0]
    elif len(values) == 1:
        raise validation_error(
            f'"{name}" failed custom validation because '
            f"{name} must be a valid array or stringified array."
        )

    seen: set[str] = set()
    addresses = []
    for index, value in enumerate(values):
        if not isinstance(value, str) or not is_valid_address(value):
            raise validation_error(f'"{name}[{index}]" must be a valid email')
        address = value.lower()
        if address in seen:
            raise validation_error(f'"{name}[{index}]" contains a duplicate value')
        seen.add(address)
        addresses.append(address)
    return addresses


def _boolean(fields: _Fields, name: str) -> bool:
    value = fields.get(name)
    if value is _MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise validation_error(f'"{name}" must be a boolean')


def _classification(fields: _Fields) -> str | None:
    value = fields.get("classification")
    if value is _MISSING or value is None:
        return None
    if isinstance(value, str) and value.upper() in Classification.values:
        return value.upper()
    raise validation_error(f'"classification" must be one of [{", ".join(Classification.values)}]')


def _tag(fields: _Fields) -> str | None:
    value = _string(fields, "tag")
    if value is None:
        return None
    if len(value) > MAX_TAG_LENGTH:
        raise validation_error(
            f'"tag" length must be less than or equal to {MAX_TAG_LENGTH} characters long'
        )
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise validation_error('"tag" must not contain control characters')
    return value


def _sender(fields: _Fields) -> tuple[Mailbox | None, str | None]:
    raw = _string(fields, "from")
    if raw is None:
        return None, None
    mailbox = parse_mailbox(raw)
    if mailbox is None:
        raise validation_error('"from" must be a valid email')
    return mailbox, raw


def _reply_to(fields: _Fields) -> str | None:
    reply_to = _email(fields, "reply_to", trim=True)
    alias = _email(fields, "reply-to", trim=True)
    if reply_to and alias and reply_to != alias:
        raise validation_error(
            '"reply_to" and "reply-to" must not both be given with different values'
        )
    return reply_to or alias


def _uploads(fields: _Fields, files) -> list[UploadedFile]:
    """Attachments must be file parts of a multipart body, never a JSON or text value."""
    uploads = list(files.getlist("attachments")) if files is not None else []
    if fields.get("attachments") is not _MISSING:
        values = fields.get_list("attachments")
        if not all(isinstance(value, UploadedFile) for value in values):
            raise ApiError("attachment_format", errors.ATTACHMENT_FORMAT)
    return uploads


def parse_send_input(data, files=None) -> SendInput:
    """Validate a send request body; raise ApiError with the first problem found.

    Covers the checks that come before the email is recorded: fields, attachment limits and the
    cc/bcc count."""
    if not isinstance(data, dict) and not hasattr(data, "getlist"):
        raise validation_error('"value" must be of type object')
    fields = _Fields(data)

    recipient = _email(fields, "recipient", required=True)
    subject = _string(fields, "subject", required=True)
    body = _body(fields)
    sender, raw_from = _sender(fields)
    reply_to = _reply_to(fields)
    raw_reply_to = fields.get("reply_to")
    if raw_reply_to is _MISSING:
        raw_reply_to = fields.get("reply-to")
    cc = _address_list(fields, "cc")
    bcc = _address_list(fields, "bcc")
    classification = _classification(fields)
    tag = _tag(fields)
    disable_tracking = _boolean(fields, "disable_tracking")
    unknown = [name for name in fields.names() if name not in ALLOWED_FIELDS]
    if unknown:
        raise validation_error(f'"{unknown[0]}" is not allowed')

    uploads = _uploads(fields, files)
    if uploads and (sender is None or sender.address in default_from_addresses()):
        raise ApiError("unauthorized", errors.ATTACHMENT_DEFAULT_FROM, HTTPStatus.FORBIDDEN)
    if any(upload.size >= att.MAX_ATTACHMENT_BYTES for upload in uploads):
        raise ApiError(
            "attachment_limit", errors.ATTACHMENT_TOO_LARGE, HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        )
    if sum(upload.size for upload in uploads) > att.MAX_ATTACHMENT_BYTES:
        raise ApiError(
            "attachment_limit", errors.ATTACHMENTS_TOO_LARGE, HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        )
    if len(cc) + len(bcc) > MAX_CC_BCC:
        raise ApiError("too_many_recipients", errors.TOO_MANY_RECIPIENTS)

    return SendInput(
        recipient=recipient,
        subject=subject,
        body=body,
        sender=sender,
        reply_to=reply_to,
        cc=cc,
        bcc=bcc,
        classification=classification,
        tag=tag,
        disable_tracking=disable_tracking,
        attachments=[att.read_attachment(upload) for upload in uploads],
        raw_from=raw_from,
        raw_reply_to=raw_reply_to if isinstance(raw_reply_to, str) else None,
    )
