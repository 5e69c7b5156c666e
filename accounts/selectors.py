"""Portal reads of members and the audit log; every query starts from the viewer's agency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Agency, AuditEvent, User
from postman_email.keyset import Page, keyset_page

AUDIT_PAGE_SIZE = 50


def member_list(*, agency: Agency) -> QuerySet[User]:
    return User.objects.filter(agency=agency, is_active=True).order_by("-role", "email")


def member_get(*, agency: Agency, member_id: int) -> User | None:
    """An active member of ``agency``; None for anyone else (another agency's user is 404)."""
    return User.objects.filter(agency=agency, is_active=True, pk=member_id).first()


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def audit_actions(*, agency: Agency) -> list[str]:
    """The actions that occur in the agency's log, for the filter's choices."""
    return sorted(
        AuditEvent.objects.filter(agency=agency)
        .order_by()
        .values_list("action", flat=True)
        .distinct()
    )


def audit_list(
    *,
    agency: Agency,
    filters: AuditFilters,
    after: str | None = None,
    before: str | None = None,
    size: int = AUDIT_PAGE_SIZE,
) -> Page:
    """The agency's audit events, newest first, keyset-paginated on (created_at, id)."""
    events = AuditEvent.objects.filter(agency=agency)
    if filters.actor:
        events = events.filter(actor_email__iexact=filters.actor.strip())
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.date_from:
        events = events.filter(created_at__gte=_start_of(filters.date_from))
    if filters.date_to:
        # Inclusive: the whole "to" day, in the portal's time zone.
        events = events.filter(created_at__lt=_start_of(filters.date_to + timedelta(days=1)))
    return keyset_page(
        events, field="created_at", descending=True, size=size, after=after, before=before
    )
