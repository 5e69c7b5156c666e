"""The send pipeline after validation (SPEC §4 "Order of checks").

The sender, recipient, content and file-type checks run in the reference's order; the email is
recorded UNSENT either way, so that every refused send leaves a row explaining why
(``error_code``), and a clean email is queued for delivery once it is committed.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from http import HTTPStatus

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apikeys.models import ApiKey
from emails.addresses import default_from_addresses, default_from_mailbox
from emails.api import errors
from emails.api.errors import ApiError
from emails.api.send_input import SendInput
from emails.attachments import inline_positions, is_allowed_type
from emails.models import Email, EmailAttachment, EmailRecipient
from emails.sanitise import sanitise_body, sanitise_subject
from emails.sender_selectors import from_address_standing
from emails.services.delivery import email_enqueue
from emails.services.suppressions import blocked_addresses_query
from postman_email.inserts import insert_with_children

ERROR_BLACKLISTED = "Error 400: Blacklisted recipient"
ERROR_EMPTY = "Error 400: Email subject and/or body empty after removing invalid HTML tags"
ERROR_FILE_TYPE = "Error 400: Unsupported file type"
ERROR_FROM_NOT_VERIFIED = f"Error 400: {errors.FROM_NOT_VERIFIED}"


def _sender_rejection(*, api_key: ApiKey, payload: SendInput) -> tuple[str, ApiError] | None:
    """None when the from address is the default or verified for the caller's agency."""
    if payload.sender is None or payload.sender.address in default_from_addresses():
        return None
    address = payload.sender.address
    # Verified addresses, verified sender domains and the agency's own domains: one query
    # (issue 6, docs/senders.md).
    standing = from_address_standing(agency_id=api_key.agency_id, address=address)
    if standing.allowed:
        return None
    if standing.own_domain or address == api_key.owner.email:
        return ERROR_FROM_NOT_VERIFIED, ApiError("invalid_from_address", errors.FROM_NOT_VERIFIED)
    message = errors.invalid_from_message(default_from_mailbox().address)
    return f"Error 400: {message}", ApiError("invalid_from_address", message)


def _record(
    *,
    api_key: ApiKey,
    payload: SendInput,
    blacklisted: set[str],
    subject: str,
    html: str,
    idempotency_key: str | None,
    error_code: str | None,
    unless: tuple[str, list] | None = None,
) -> tuple[Email, set[str]]:
    """The email and its recipients, recorded in one statement; or, when the ``unless`` query
    finds addresses, nothing, and those addresses."""
    now = timezone.now()
    email = Email(
        agency_id=api_key.agency_id,
        api_key=api_key,
        mode=api_key.mode,
        sender=str(payload.sender) if payload.sender else settings.DEFAULT_FROM_EMAIL,
        recipient=payload.recipient,
        reply_to=payload.reply_to or api_key.owner.email,
        cc=[address for address in payload.cc if address not in blacklisted],
        bcc=[address for address in payload.bcc if address not in blacklisted],
        params=payload.params,
        attachments_metadata=[a.metadata() for a in payload.attachments] or None,
        classification=payload.classification,
        tag=payload.tag,
        disable_tracking=payload.disable_tracking,
        subject=subject,
        html=html,
        # Its unique index is the last guard against a second email for one request.
        idempotency_key=idempotency_key,
        error_code=error_code,
        created_at=now,
        updated_at=now,
    )
    rows: dict[str, EmailRecipient] = {}
    for kind, addresses in (("to", [payload.recipient]), ("cc", payload.cc), ("bcc", payload.bcc)):
        for address in addresses:
            # An address given twice (to and cc, or cc and bcc) is one envelope recipient.
            rows.setdefault(
                address,
                EmailRecipient(
                    kind=kind,
                    address=address,
                    error_code=ERROR_BLACKLISTED if address in blacklisted else None,
                    updated_at=now,
                ),
            )
    found = insert_with_children(email, list(rows.values()), fk_name="email", unless=unless)
    return email, set(found)


def _store_attachments(*, email: Email, payload: SendInput) -> None:
    if not payload.attachments:
        return
    inline = inline_positions(email.html)
    rows = []
    for position, attachment in enumerate(payload.attachments):
        row = EmailAttachment(
            email=email,
            position=position,
            filename=attachment.filename,
            content_type=attachment.upload.content_type or "application/octet-stream",
            size=attachment.size,
            md5=attachment.md5,
            inline=position in inline,
        )
        row.file.save(str(position), attachment.upload, save=False)
        rows.append(row)
    EmailAttachment.objects.bulk_create(rows)


def email_send(*, api_key: ApiKey, payload: SendInput, idempotency_key: str | None = None) -> Email:
    """Record the email and queue it, or record why it was refused and raise the API error.

    A refused email is committed (UNSENT with ``error_code``) before the error is raised, so
    the caller can always look up what happened to every request that got this far."""
    subject = sanitise_subject(payload.subject)
    html = sanitise_body(payload.body)
    sender_rejection = _sender_rejection(api_key=api_key, payload=payload)
    record = partial(
        _record,
        api_key=api_key,
        payload=payload,
        subject=subject,
        html=html,
        idempotency_key=idempotency_key,
    )
    checks = partial(_rejection, sender_rejection, payload=payload, subject=subject, html=html)
    # The global blacklist and the agency's own suppression list, refused alike: one lookup,
    # made by the statement that records the email as if it found nothing, and writes nothing
    # if it does. Almost no send blocks an address; one that does is then recorded knowing them.
    blocked = blocked_addresses_query(
        agency_id=api_key.agency_id, addresses=[payload.recipient, *payload.cc, *payload.bcc]
    )
    # Files and attachment rows must commit with the email or not at all.
    with transaction.atomic() if payload.attachments else nullcontext():
        rejection = checks(blacklisted=set())
        email, blacklisted = record(blacklisted=set(), error_code=_code(rejection), unless=blocked)
        if blacklisted:
            rejection = checks(blacklisted=blacklisted)
            email, _ = record(blacklisted=blacklisted, error_code=_code(rejection))
        if not rejection:
            _store_attachments(email=email, payload=payload)
            email_enqueue(email=email)

    if rejection:
        raise rejection[1]
    return email


def _code(rejection: tuple[str, ApiError] | None) -> str | None:
    return rejection[0] if rejection else None


def _rejection(
    sender_rejection: tuple[str, ApiError] | None,
    *,
    payload: SendInput,
    blacklisted: set[str],
    subject: str,
    html: str,
) -> tuple[str, ApiError] | None:
    """The first check that refuses the email, in the reference's order, with the error_code
    its row records; the sender's check (a query) is made once, by the caller."""
    if sender_rejection:
        return sender_rejection
    if payload.recipient in blacklisted:
        return ERROR_BLACKLISTED, ApiError("invalid_template", errors.BLACKLISTED_RECIPIENT)
    if not subject or not html.strip():
        return ERROR_EMPTY, ApiError("invalid_template", errors.EMPTY_AFTER_SANITISING)
    if not all(is_allowed_type(attachment) for attachment in payload.attachments):
        return ERROR_FILE_TYPE, ApiError(
            "invalid_template", errors.UNSUPPORTED_FILE_TYPE, HTTPStatus.BAD_REQUEST
        )
    return None
