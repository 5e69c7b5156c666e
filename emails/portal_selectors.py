"""Reads of emails for the portal: dashboard aggregates, the filtered list and the detail page.

Every query starts from the viewer's agency, the leading column of every index on Email, so one
agency never sees another's rows and lists stay index scans however large the table grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.core.cache import cache
from django.db.models import Case, Count, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Agency
from emails.addresses import address_match
from emails.models import Email, EmailEvent, EmailRecipient, Status
from postman_email.keyset import Page, keyset_page

PAGE_SIZE = 50
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
CHART_DAYS = 30
# The chart's series, each an outcome of the emails created that day (see docs/portal.md).
SERIES = ("accepted", "delivered", "opened", "bounced", "complained")
_SERIES_FILTERS = {
    "accepted": Q(accepted_at__isnull=False),
    "delivered": Q(delivered_at__isnull=False),
    "opened": Q(opened_at__isnull=False),
    "bounced": Q(status=Status.BOUNCED),
    "complained": Q(status=Status.COMPLAINT),
}
# The list never needs the bodies.
_LIST_DEFERRED = ("params", "html", "last_smtp_response", "cc", "bcc")

SORT_CHOICES: dict[str, str] = {
    "-created_at": "Newest first",
    "created_at": "Oldest first",
    "-updated_at": "Recently updated",
    "updated_at": "Least recently updated",
}


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# ---------------------------------------------------------------------------------------------
# Dashboard


@dataclass(frozen=True)
class WindowCounts:
    key: str
    total: int
    by_status: dict[str, int]


def status_counts(*, agency: Agency, now: datetime | None = None) -> list[WindowCounts]:
    """Emails created in the last 24 h / 7 d / 30 d, by status, in one query.

    Each email is counted once, in the narrowest window it falls in (GROUP BY status and
    window), and the wider windows add the narrower ones up: a fraction of the cost of one
    conditional COUNT per window and status on an agency with a million emails a month.
    """
    now = now or timezone.now()
    keys = sorted(WINDOWS, key=WINDOWS.get)  # narrowest first
    bucket = Case(
        *[When(created_at__gt=now - WINDOWS[key], then=Value(i)) for i, key in enumerate(keys)],
        output_field=IntegerField(),
    )
    rows = (
        Email.objects.filter(
            agency=agency, created_at__gt=now - WINDOWS[keys[-1]], created_at__lte=now
        )
        .annotate(bucket=bucket)
        .order_by()
        .values("bucket", "status")
        .annotate(count=Count("id"))
    )
    per_bucket = {(row["bucket"], row["status"]): row["count"] for row in rows}
    result = []
    for i, key in enumerate(keys):
        by_status = {
            status: sum(per_bucket.get((j, status), 0) for j in range(i + 1))
            for status in Status.values
        }
        result.append(WindowCounts(key=key, total=sum(by_status.values()), by_status=by_status))
    return result


@dataclass(frozen=True)
class Day:
    day: date
    created: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def daily_outcomes(
    *, agency: Agency, days: int = CHART_DAYS, now: datetime | None = None
) -> list[Day]:
    """For each of the last ``days`` days (portal time zone, oldest first, today included):
    how many emails were created, and how many of those were accepted, delivered, opened,
    bounced and complained about. Days without email are zeros, so the chart has no gaps."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    rows = (
        Email.objects.filter(agency=agency, created_at__gte=_local_midnight(first))
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values("day")
        .annotate(
            created=Count("id"),
            **{name: Count("id", filter=condition) for name, condition in _SERIES_FILTERS.items()},
        )
    )
    by_day = {row["day"]: row for row in rows}
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {})
        result.append(
            Day(
                day=day,
                created=row.get("created", 0),
                counts={name: row.get(name, 0) for name in SERIES},
            )
        )
    return result


@dataclass(frozen=True)
class DashboardData:
    windows: list[WindowCounts]
    days: list[Day]
    cached: bool = False


# An agency sending a million emails a month needs about a second for the two aggregates above;
# from this many emails in 30 days on, the dashboard's numbers are reused for a minute (per
# agency, in the shared cache). Smaller agencies always see live numbers: their first email
# must show up at once.
DASHBOARD_CACHE_FROM = 50_000
DASHBOARD_CACHE_SECONDS = 60


def dashboard_data(*, agency: Agency) -> DashboardData:
    key = f"portal:dashboard:{agency.pk}"
    cached = cache.get(key)
    if cached is not None:
        return DashboardData(windows=cached.windows, days=cached.days, cached=True)
    data = DashboardData(windows=status_counts(agency=agency), days=daily_outcomes(agency=agency))
    if data.windows[-1].total >= DASHBOARD_CACHE_FROM:
        cache.set(key, data, DASHBOARD_CACHE_SECONDS)
    return data


def agency_has_emails(*, agency: Agency) -> bool:
    return Email.objects.filter(agency=agency).exists()


# ---------------------------------------------------------------------------------------------
# List


@dataclass(frozen=True)
class PortalEmailFilters:
    status: str = ""
    tag: str = ""
    recipient: str = ""
    created_from: date | None = None
    created_to: date | None = None
    sort: str = "-created_at"

    @property
    def active(self) -> bool:
        return bool(
            self.status or self.tag or self.recipient or self.created_from or self.created_to
        )


def _filtered(agency: Agency, filters: PortalEmailFilters) -> QuerySet[Email]:
    emails = Email.objects.filter(agency=agency)
    if filters.status:
        emails = emails.filter(status=filters.status)
    if filters.tag:
        emails = emails.filter(tag=filters.tag)
    if filters.recipient:
        # Served by the (agency, recipient) pattern index (see docs/portal.md).
        emails = emails.filter(address_match("recipient", filters.recipient))
    if filters.created_from:
        emails = emails.filter(created_at__gte=_local_midnight(filters.created_from))
    if filters.created_to:
        emails = emails.filter(
            created_at__lt=_local_midnight(filters.created_to + timedelta(days=1))
        )
    return emails


def portal_email_list(
    *,
    agency: Agency,
    filters: PortalEmailFilters,
    after: str | None = None,
    before: str | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """One keyset page of the agency's emails: no OFFSET and no COUNT, so page 20 000 costs what
    page 1 costs."""
    sort = filters.sort if filters.sort in SORT_CHOICES else "-created_at"
    emails = _filtered(agency, filters).defer(*_LIST_DEFERRED)
    return keyset_page(
        emails,
        field=sort.lstrip("-"),
        descending=sort.startswith("-"),
        size=size,
        after=after,
        before=before,
    )


# ---------------------------------------------------------------------------------------------
# Detail


def portal_email_get(*, agency: Agency, email_id: int) -> Email | None:
    """The agency's email with recipients, events (oldest first) and attachments; None when it
    does not exist or belongs to another agency."""
    return (
        Email.objects.filter(agency=agency, pk=email_id)
        .select_related("api_key")
        .prefetch_related(
            Prefetch("recipients", queryset=EmailRecipient.objects.order_by("pk")),
            Prefetch(
                "events",
                queryset=EmailEvent.objects.select_related("recipient").order_by(
                    "occurred_at", "pk"
                ),
            ),
            "attachments",
        )
        .first()
    )


def portal_email_html(*, agency: Agency, email_id: int) -> str | None:
    """Only the sanitised HTML body of the agency's email, for the preview frame."""
    return Email.objects.filter(agency=agency, pk=email_id).values_list("html", flat=True).first()
