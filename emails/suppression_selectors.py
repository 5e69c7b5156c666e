"""Reads of an agency's suppression list. Every query starts from the agency, so another
agency's entries are never in a result: a portal view answers 404 for them."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Agency
from emails.models import Suppression


def suppression_list(*, agency: Agency, search: str = "") -> QuerySet[Suppression]:
    """The agency's list, newest first; ``search`` is an address or the beginning of one."""
    entries = Suppression.objects.filter(agency=agency).select_related("created_by")
    search = search.strip().lower()
    if search:
        entries = entries.filter(address__startswith=search)
    return entries.order_by("-created_at", "-id")


def suppression_get(*, agency: Agency, suppression_id: int) -> Suppression | None:
    return Suppression.objects.filter(agency=agency, pk=suppression_id).first()
