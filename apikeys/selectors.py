"""Which keys a portal user may see and manage: admins all of their agency's, members their own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from apikeys.models import ApiKey

EXPIRING_SOON = timedelta(days=28)


def apikeys_visible_to(user: User) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.filter(agency_id=user.agency_id)
    if user.role != User.Role.ADMIN:
        keys = keys.filter(owner=user)
    return keys


def apikey_get_for(*, user: User, key_id: int) -> ApiKey | None:
    """The key if ``user`` may manage it; None otherwise (a teammate's key for a member, any
    key of another agency), which the views turn into 404."""
    return apikeys_visible_to(user).select_related("owner", "agency").filter(pk=key_id).first()


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    state: str  # active | expiring | rotated | expired | revoked
    state_label: str
    successor: ApiKey | None

    @property
    def manageable(self) -> bool:
        return self.state in ("active", "expiring", "rotated")


def _row(key: ApiKey, now: datetime) -> KeyRow:
    # A missing reverse one-to-one raises an AttributeError subclass: getattr gives None.
    successor = getattr(key, "successor", None)
    if key.revoked_at is not None:
        state, label = "revoked", "Revoked"
    elif key.valid_until <= now:
        state, label = "expired", "Expired"
    elif successor is not None:
        state, label = "rotated", "Rotated"
    elif key.valid_until - now <= EXPIRING_SOON:
        state, label = "expiring", "Expires soon"
    else:
        state, label = "active", "Active"
    return KeyRow(key=key, state=state, state_label=label, successor=successor)


def apikey_rows(*, user: User, now: datetime | None = None) -> list[KeyRow]:
    """The keys ``user`` may manage, usable ones first, newest first within each group."""
    now = now or timezone.now()
    keys = apikeys_visible_to(user).select_related("owner", "successor").order_by("-created_at")
    rows = [_row(key, now) for key in keys]
    order = {"active": 0, "expiring": 0, "rotated": 0, "expired": 1, "revoked": 2}
    return sorted(rows, key=lambda row: order[row.state])


def apikey_row(key: ApiKey, now: datetime | None = None) -> KeyRow:
    return _row(key, now or timezone.now())
