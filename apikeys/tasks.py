"""django-q2 task entry points for API keys."""

from __future__ import annotations

from apikeys.services import apikey_send_expiry_reminders


def send_expiry_reminders() -> int:
    """Daily (the ``apikeys.expiry_reminders`` schedule, created by a migration)."""
    return apikey_send_expiry_reminders()
