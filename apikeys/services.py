from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from apikeys.models import ApiKey

SECRET_ALPHABET = string.ascii_letters + string.digits
# 43 base-62 characters carry 256 bits.
SECRET_LENGTH = 43
DEFAULT_VALIDITY = timedelta(days=182)
SCOPES = ("send", "read")
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
) -> CreatedKey:
    """Create a key. The plaintext is returned once and never stored."""
    plaintext = _make_plaintext(owner.email, test=test)
    key = ApiKey.objects.create(
        agency=owner.agency,
        owner=owner,
        label=label,
        digest=apikey_digest(plaintext),
        last_five=plaintext[-5:],
        mode=ApiKey.Mode.TEST if test else ApiKey.Mode.LIVE,
        scopes=list(scopes or SCOPES),
        contacts=sorted({c.strip().lower() for c in contacts or [owner.email]}),
        valid_until=timezone.now() + valid_for,
    )
    return CreatedKey(key=key, plaintext=plaintext)
