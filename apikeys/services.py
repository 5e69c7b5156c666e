"""API key lifecycle: create, rotate, revoke, contacts, expiry reminders (SPEC §8).

Only an HMAC-SHA256 digest keyed with ``API_KEY_PEPPER`` is stored; the plaintext exists once,
in the value ``apikey_create``/``apikey_rotate`` return, and is never written or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import User
from apikeys.models import ApiKey, ApiKeyReminder
from emails.addresses import is_valid_address
from emails.services.system import email_send_system

SECRET_ALPHABET = string.ascii_letters + string.digits
# 43 base-62 characters carry 256 bits.
SECRET_LENGTH = 43
DEFAULT_VALIDITY = timedelta(days=182)
MAX_VALIDITY = timedelta(days=366)
SCOPES = ("send", "read")
GRACE_PERIODS = {
    "0": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
REMINDER_DAYS = {28: "four weeks", 14: "two weeks", 3: "three days", 1: "one day"}
# The shape every key has; anything else is refused before the database is asked.
KEY_SHAPE = re.compile(r"^[a-z0-9]{1,64}(?:_test)?_v1_[A-Za-z0-9]{43}$")


def apikey_digest(plaintext: str) -> str:
    return hmac.new(
        settings.API_KEY_PEPPER.encode(), plaintext.encode(), hashlib.sha256
    ).hexdigest()


def _key_name(email: str) -> str:
    local_part = email.split("@", 1)[0]
    return re.sub(r"[^a-z0-9]", "", local_part.lower())[:64] or "key"


def _make_plaintext(owner_email: str, *, test: bool) -> str:
    secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    prefix = _key_name(owner_email) + ("_test" if test else "")
    return f"{prefix}_v1_{secret}"


def _clean_contacts(contacts: list[str]) -> list[str]:
    cleaned = sorted({contact.strip().lower() for contact in contacts if contact.strip()})
    if not cleaned:
        raise ValidationError("A key needs at least one notification contact.")
    invalid = [contact for contact in cleaned if not is_valid_address(contact)]
    if invalid:
        raise ValidationError(f"Not a valid email address: {invalid[0]}")
    return cleaned


def _clean_scopes(scopes: list[str] | None) -> list[str]:
    given = set(scopes if scopes is not None else SCOPES)
    if not given or not given <= set(SCOPES):
        raise ValidationError(f"Scopes must be some of: {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in given]


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


@transaction.atomic
def apikey_create(
    *,
    owner: User,
    label: str,
    test: bool = False,
    scopes: list[str] | None = None,
    contacts: list[str] | None = None,
    valid_for: timedelta = DEFAULT_VALIDITY,
    actor: Actor | None = None,
    predecessor: ApiKey | None = None,
) -> CreatedKey:
    """Create a key. The plaintext is returned once and never stored."""
    if not timedelta(0) < valid_for <= MAX_VALIDITY:
        raise ValidationError("A key is valid for at most 12 months.")
    label = label.strip()
    if not label or len(label) > 100:
        raise ValidationError("A key needs a label of at most 100 characters.")
    plaintext = _make_plaintext(owner.email, test=test)
    key = ApiKey.objects.create(
        agency=owner.agency,
        owner=owner,
        label=label,
        digest=apikey_digest(plaintext),
        last_five=plaintext[-5:],
        mode=ApiKey.Mode.TEST if test else ApiKey.Mode.LIVE,
        scopes=_clean_scopes(scopes),
        contacts=_clean_contacts(contacts if contacts is not None else [owner.email]),
        valid_until=timezone.now() + valid_for,
        predecessor=predecessor,
    )
    audit_record(
        actor=actor or Actor.system(),
        action="apikey.created",
        agency=key.agency,
        target=key,
        details={
            "mode": key.mode,
            "scopes": key.scopes,
            "valid_until": key.valid_until.isoformat(),
        },
    )
    return CreatedKey(key=key, plaintext=plaintext)


@transaction.atomic
def apikey_rotate(*, key: ApiKey, grace: timedelta, actor: Actor | None = None) -> CreatedKey:
    """Issue a successor with the same label, scopes and contacts; the old key keeps working
    for ``grace`` (never longer than it would have anyway). The returned key's ``predecessor``
    is the old key as it now is."""
    key = ApiKey.objects.select_for_update().select_related("owner", "agency").get(pk=key.pk)
    if key.revoked_at is not None:
        raise ValidationError("A revoked key cannot be rotated.")
    if ApiKey.objects.filter(predecessor=key).exists():
        raise ValidationError("This key has already been rotated.")
    created = apikey_create(
        owner=key.owner,
        label=key.label,
        test=key.mode == ApiKey.Mode.TEST,
        scopes=key.scopes,
        contacts=key.contacts,
        actor=actor,
        predecessor=key,
    )
    key.valid_until = min(key.valid_until, timezone.now() + grace)
    key.save(update_fields=["valid_until"])
    audit_record(
        actor=actor or Actor.system(),
        action="apikey.rotated",
        agency=key.agency,
        target=key,
        details={"successor": created.key.pk, "old_key_valid_until": key.valid_until.isoformat()},
    )
    return created


@transaction.atomic
def apikey_revoke(*, key: ApiKey, actor: Actor | None = None) -> ApiKey:
    """Revoke at once: the next request with the key gets 401."""
    now = timezone.now()
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
    if not updated:
        key.refresh_from_db(fields=["revoked_at"])  # revoked before: keep that time
        return key
    key.revoked_at = now
    audit_record(
        actor=actor or Actor.system(), action="apikey.revoked", agency=key.agency, target=key
    )
    return key


@transaction.atomic
def apikey_update_contacts(
    *, key: ApiKey, contacts: list[str], actor: Actor | None = None
) -> ApiKey:
    before = key.contacts
    key.contacts = _clean_contacts(contacts)
    key.save(update_fields=["contacts"])
    audit_record(
        actor=actor or Actor.system(),
        action="apikey.contacts_updated",
        agency=key.agency,
        target=key,
        details={"before": before, "after": key.contacts},
    )
    return key


def _due_reminder(key: ApiKey, now) -> int | None:
    """The reminder a key is due: the nearest threshold it has crossed."""
    remaining = key.valid_until - now
    crossed = [days for days in REMINDER_DAYS if remaining <= timedelta(days=days)]
    return min(crossed) if crossed else None


def apikey_send_expiry_reminders(*, now=None) -> int:
    """Email the contacts of live keys that expire within 28, 14, 3 or 1 days.

    Safe to run twice, or on two workers at once: the unique (key, days_before) row is claimed
    before the email is queued, in the same transaction. Returns the number of reminders sent.
    """
    now = now or timezone.now()
    keys = (
        ApiKey.objects.select_related("agency", "owner")
        .filter(
            revoked_at__isnull=True,
            valid_until__gt=now,
            valid_until__lte=now + timedelta(days=max(REMINDER_DAYS)),
        )
        # The nearest threshold already reminded of, in the same query.
        .annotate(nearest_sent=Min("reminders__days_before"))
    )
    sent = 0
    for key in keys:
        days = _due_reminder(key, now)
        if days is None or (key.nearest_sent is not None and key.nearest_sent <= days):
            continue
        context = {"key": key, "days": days, "when": REMINDER_DAYS[days]}
        try:
            with transaction.atomic():
                reminder = ApiKeyReminder.objects.create(key=key, days_before=days, sent_at=now)
                reminder.email = email_send_system(
                    agency=key.agency,
                    to=key.contacts or [key.owner.email],
                    subject=render_to_string("apikeys/expiry_reminder_subject.txt", context),
                    html=render_to_string("apikeys/expiry_reminder.html", context),
                    tag=f"API key expiry {REMINDER_DAYS[days]}",
                )
                reminder.save(update_fields=["email"])
        except IntegrityError:
            continue  # another run sent it first
        sent += 1
    return sent
