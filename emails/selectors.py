"""Reads of emails for the API. Every query starts from the caller's agency, which is also the
leading column of each index on Email, so tenants never see each other's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from accounts.models import Agency
from emails.models import Email

SortField = Literal["created_at", "updated_at"]

# Columns the API never shows: what was actually sent (subject and HTML) and delivery
# bookkeeping. A page of 1000 emails with 1 MiB bodies would otherwise load them twice.
_NOT_SHOWN = ("subject", "html", "last_smtp_response")


@dataclass(frozen=True)
class EmailListFilters:
    limit: int = 10
    offset: int = 0
    tag: str | None = None
    status: str | None = None
    created_at_gt: datetime | None = None
    created_at_gte: datetime | None = None
    created_at_lt: datetime | None = None
    created_at_lte: datetime | None = None
    sort_field: SortField = "created_at"
    descending: bool = True
    # Not a filter, but it lets the query skip the largest column (the raw body in params).
    exclude_params: bool = False


@dataclass(frozen=True)
class EmailPage:
    emails: list[Email]
    has_more: bool


def email_get(*, agency: Agency, email_id: int) -> Email | None:
    """The agency's email with this id, or None (another agency's email is not found either).

    Ids beyond the bigint column's range match nothing (Django turns the out-of-range lookup
    into an empty result instead of letting the database raise)."""
    return Email.objects.filter(agency=agency, pk=email_id).first()


def email_list(*, agency: Agency, filters: EmailListFilters) -> EmailPage:
    """One page of the agency's emails, newest first unless told otherwise.

    Ties on the sort column are broken by id in the same direction, so the order is total
    and offset pages neither repeat nor skip rows; with the agency filter this is exactly the
    (agency, -<column>, -id) index, scanned backwards for ascending order. One extra row is
    fetched so that ``has_more`` is exact.
    """
    emails = Email.objects.filter(agency=agency)
    if filters.tag is not None:
        emails = emails.filter(tag=filters.tag)
    if filters.status is not None:
        emails = emails.filter(status=filters.status)
    bounds = {
        "created_at__gt": filters.created_at_gt,
        "created_at__gte": filters.created_at_gte,
        "created_at__lt": filters.created_at_lt,
        "created_at__lte": filters.created_at_lte,
    }
    emails = emails.filter(
        **{lookup: value for lookup, value in bounds.items() if value is not None}
    )

    direction = "-" if filters.descending else ""
    emails = emails.order_by(f"{direction}{filters.sort_field}", f"{direction}id")
    emails = emails.defer(*_NOT_SHOWN, *(("params",) if filters.exclude_params else ()))

    start = filters.offset
    rows = list(emails[start : start + filters.limit + 1])
    return EmailPage(emails=rows[: filters.limit], has_more=len(rows) > filters.limit)
