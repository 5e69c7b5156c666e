"""The agency's audit log (admins only)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import agency_admin_required
from accounts.forms import AuditFilterForm
from accounts.models import AuditEvent
from accounts.selectors import AuditFilters, audit_actions, audit_list


@agency_admin_required
@require_GET
def audit_view(request: HttpRequest) -> HttpResponse:
    agency = request.user.agency
    form = AuditFilterForm(request.GET or None, actions=audit_actions(agency=agency))
    filters = AuditFilters()
    if form.is_bound and form.is_valid():
        filters = AuditFilters(**form.cleaned_data)
    page = audit_list(
        agency=agency,
        filters=filters,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    actors = (
        AuditEvent.objects.filter(agency=agency)
        .exclude(actor_email="")
        .order_by()
        .values_list("actor_email", flat=True)
        .distinct()
    )
    query = request.GET.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    context = {
        "nav": "audit",
        "form": form,
        "page": page,
        "actors": sorted(actors),
        "query": query.urlencode(),
        "filtered": any(request.GET.get(k) for k in ("actor", "action", "date_from", "date_to")),
    }
    return render(request, "accounts/audit.html", context)
