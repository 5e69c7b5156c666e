"""Portal pages about emails: the dashboard, the list, the detail page and the body preview."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from accounts.decorators import portal_login_required
from emails.charts import line_chart
from emails.models import Status
from emails.portal_forms import EmailFilterForm
from emails.portal_selectors import (
    SORT_CHOICES,
    agency_has_emails,
    dashboard_data,
    portal_email_get,
    portal_email_html,
    portal_email_list,
)
from postman_email.middleware import HEADER as CSP_HEADER

WINDOW_LABELS = {"24h": "Last 24 h", "7d": "Last 7 days", "30d": "Last 30 days"}

# The preview shows the sanitised body in a sandboxed frame: no script can run (the frame has
# sandbox="" and the policy allows none), nothing is fetched from elsewhere unless the viewer
# asks for remote images, and only this site may frame it.
PREVIEW_POLICY = (
    "default-src 'none'; img-src cid: data:{remote}; style-src 'unsafe-inline'; "
    "font-src data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox"
)


def first_email_context(request: HttpRequest) -> dict[str, str]:
    return {"public_base_url": settings.PUBLIC_BASE_URL}


@portal_login_required
@require_GET
def dashboard_view(request: HttpRequest) -> HttpResponse:
    agency = request.user.agency
    data = dashboard_data(agency=agency)
    windows, days = data.windows, data.days
    context = {
        "nav": "dashboard",
        "windows": [
            {
                "key": w.key,
                "label": WINDOW_LABELS[w.key],
                "total": w.total,
                "by_status": w.by_status,
            }
            for w in windows
        ],
        "status_rows": [
            {"status": status, "counts": [w.by_status[status] for w in windows]}
            for status in Status.values
        ],
        "chart": line_chart(days),
        "days": days,
        "cached": data.cached,
        "has_emails": windows[-1].total > 0 or agency_has_emails(agency=agency),
        **first_email_context(request),
    }
    return render(request, "emails/dashboard.html", context)


@portal_login_required
@require_GET
def email_list_view(request: HttpRequest) -> HttpResponse:
    agency = request.user.agency
    form = EmailFilterForm(request.GET)
    form.is_valid()  # invalid fields are shown with their error and ignored
    filters = form.to_filters()
    page = portal_email_list(
        agency=agency,
        filters=filters,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    query = request.GET.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    ascending = not filters.sort.startswith("-")
    context = {
        "nav": "emails",
        "form": form,
        "filters": filters,
        "page": page,
        "query": query.urlencode(),
        "statuses": Status.values,
        "sort_choices": SORT_CHOICES,
        "prev_label": "← Previous" if ascending else "← Newer",
        "next_label": "Next →" if ascending else "Older →",
        # The first-email help only when the agency has no email at all, not for a filter
        # that matches nothing.
        "no_emails_at_all": not page.rows
        and not filters.active
        and not agency_has_emails(agency=agency),
        **first_email_context(request),
    }
    return render(request, "emails/list.html", context)


@portal_login_required
@require_GET
def email_detail_view(request: HttpRequest, email_id: int) -> HttpResponse:
    email = portal_email_get(agency=request.user.agency, email_id=email_id)
    if email is None:
        raise Http404("No such email")
    remote = request.GET.get("remote") == "1"
    context = {
        "nav": "emails",
        "email": email,
        "recipients": list(email.recipients.all()),
        "events": list(email.events.all()),
        "attachments": list(email.attachments.all()),
        "remote_images": remote,
        "preview_url": f"/emails/{email.pk}/preview" + ("?remote=1" if remote else ""),
    }
    return render(request, "emails/detail.html", context)


@never_cache
@xframe_options_sameorigin
@portal_login_required
@require_GET
def email_preview_view(request: HttpRequest, email_id: int) -> HttpResponse:
    html = portal_email_html(agency=request.user.agency, email_id=email_id)
    if html is None:
        raise Http404("No such email")
    remote = request.GET.get("remote") == "1"
    document = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<title>Preview</title></head><body>" + html + "</body></html>"
    )
    response = HttpResponse(document, content_type="text/html; charset=utf-8")
    response[CSP_HEADER] = PREVIEW_POLICY.format(remote=" https:" if remote else "")
    response["Referrer-Policy"] = "no-referrer"
    return response
