"""django-q2 task entry points. Thin: the work lives in ``emails.services.delivery``."""

from __future__ import annotations

from emails.services import delivery


def deliver_email(email_id: int | None = None) -> None:
    delivery.email_deliver(email_id=email_id)


def requeue_stale() -> int:
    """Every minute (the ``emails.requeue_stale`` schedule, created by a migration)."""
    return delivery.emails_requeue_stale()
