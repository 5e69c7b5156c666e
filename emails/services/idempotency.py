"""``Idempotency-Key`` on send (SPEC §5): a retried request never sends a second email.

The first request with a key claims it by inserting an ``IdempotentRequest`` row (the unique
(agency, key) index decides between concurrent requests) and stores its response when done;
within 24 hours the same key and payload replays that response, a different payload gets 409,
and a request still in flight gets 409. The email row carries the key too, under its own unique
index, so that even a claim abandoned by a crashed web process cannot lead to a second email.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from emails.api.errors import ApiError
from emails.attachments import Attachment
from emails.models import Email, IdempotentRequest

WINDOW = timedelta(hours=24)
# A claim never completed after this long belongs to a web process that died mid-request.
ABANDONED_AFTER = timedelta(minutes=10)
MAX_KEY_LENGTH = 255

INVALID_KEY = f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
KEY_REUSED = "This Idempotency-Key was already used with a different request"
IN_FLIGHT = "A request with this Idempotency-Key is still being processed. Retry later."


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict


def idempotency_key_parse(value: str) -> str:
    if not 0 < len(value) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in value):
        raise ApiError("api_validation", INVALID_KEY)
    return value


def request_fingerprint(data, attachments: list[Attachment]) -> str:
    """A digest of what the request asks for, independent of its encoding (JSON key order,
    multipart boundaries): the fields and values, and each attachment's name, size and MD5
    (hashed once already, by validation)."""
    fields = []
    for name in sorted(data):
        values = data.getlist(name) if hasattr(data, "getlist") else [data[name]]
        for value in values:
            if not isinstance(value, UploadedFile):
                fields.append([name, json.dumps(value, sort_keys=True, default=str)])
    uploads = [[a.filename, a.size, a.md5] for a in attachments]
    canonical = json.dumps([fields, uploads], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _free_key(*, claim: IdempotentRequest, expired: bool) -> bool:
    """Delete an expired or abandoned claim; False if another request replaced it first."""
    with transaction.atomic():
        deleted, _ = IdempotentRequest.objects.filter(
            pk=claim.pk, created_at=claim.created_at
        ).delete()
        if deleted and expired:
            # After 24 h the key may name a new email.
            Email.objects.filter(agency_id=claim.agency_id, idempotency_key=claim.key).update(
                idempotency_key=None
            )
    return bool(deleted)


def idempotency_begin(
    *, agency_id: int, key: str, fingerprint: str, now: datetime | None = None
) -> Replay | None:
    """Claim ``key`` for this request: None means go ahead (and call ``idempotency_complete``
    or ``idempotency_release`` afterwards); a Replay is the original response to return."""
    now = now or timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                IdempotentRequest.objects.create(
                    agency_id=agency_id, key=key, fingerprint=fingerprint, created_at=now
                )
            return None
        except IntegrityError:
            claim = IdempotentRequest.objects.filter(agency_id=agency_id, key=key).first()
        if claim is None:
            continue  # freed meanwhile: claim it again
        expired = claim.created_at <= now - WINDOW
        abandoned = claim.completed_at is None and claim.created_at <= now - ABANDONED_AFTER
        if expired or abandoned:
            _free_key(claim=claim, expired=expired)
            continue
        if claim.fingerprint != fingerprint:
            raise ApiError("idempotency_conflict", KEY_REUSED, HTTPStatus.CONFLICT)
        if claim.completed_at is None:
            raise ApiError("idempotency_conflict", IN_FLIGHT, HTTPStatus.CONFLICT)
        return Replay(status=claim.response_status, body=claim.response_body)
    raise ApiError("idempotency_conflict", IN_FLIGHT, HTTPStatus.CONFLICT)


def idempotency_complete(*, agency_id: int, key: str, status: int, body: dict) -> None:
    IdempotentRequest.objects.filter(
        agency_id=agency_id, key=key, completed_at__isnull=True
    ).update(completed_at=timezone.now(), response_status=status, response_body=body)


def idempotency_release(*, agency_id: int, key: str) -> None:
    """Forget an unfinished claim after an unexpected error, so the client's retry can run."""
    IdempotentRequest.objects.filter(
        agency_id=agency_id, key=key, completed_at__isnull=True
    ).delete()


def idempotent_email(*, agency_id: int, key: str) -> Email | None:
    """The email an abandoned claim of ``key`` already recorded, if it got that far."""
    return Email.objects.filter(agency_id=agency_id, idempotency_key=key).first()
