"""The agency's suppression list in the portal (agency admins only): list and search, add one
address, upload a CSV, remove with a reason, export. Entries of another agency are never found:
every lookup starts from the user's agency, so their ids answer 404."""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import agency_admin_required
from accounts.http import actor_of
from emails.csv_addresses import CsvFileError
from emails.models import Suppression
from emails.services.suppressions import (
    suppression_add,
    suppression_remove,
    suppressions_export_csv,
    suppressions_import_csv,
)
from emails.suppression_forms import (
    SuppressionAddForm,
    SuppressionImportForm,
    SuppressionRemoveForm,
    SuppressionSearchForm,
)
from emails.suppression_selectors import suppression_get, suppression_list

PAGE_SIZE = 50


def _render_list(
    request: HttpRequest,
    *,
    add_form: SuppressionAddForm | None = None,
    import_form: SuppressionImportForm | None = None,
    status: int = 200,
) -> HttpResponse:
    search = SuppressionSearchForm(request.GET)
    query = search.cleaned_data["q"] if search.is_valid() else ""
    entries = suppression_list(agency=request.user.agency, search=query)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "nav": "suppressions",
        "page": page,
        "query": query,
        "add_form": add_form or SuppressionAddForm(),
        "import_form": import_form or SuppressionImportForm(),
    }
    return render(request, "emails/suppressions.html", context, status=status)


@agency_admin_required
@require_GET
def suppressions_view(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@agency_admin_required
@require_POST
def suppression_add_view(request: HttpRequest) -> HttpResponse:
    form = SuppressionAddForm(request.POST)
    if not form.is_valid():
        return _render_list(request, add_form=form, status=400)
    entry, created = suppression_add(
        agency=request.user.agency,
        address=form.cleaned_data["address"],
        reason=form.cleaned_data["reason"],
        source=Suppression.Source.ADMIN,
        actor=actor_of(request),
    )
    if created:
        messages.success(request, f"{entry.address} is suppressed: emails to it are refused.")
    else:
        messages.info(
            request,
            f"{entry.address} was already suppressed "
            f"({entry.get_source_display()}, {entry.created_at:%d %b %Y}).",
        )
    return redirect("suppressions")


@agency_admin_required
@require_POST
def suppression_import_view(request: HttpRequest) -> HttpResponse:
    form = SuppressionImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            report = suppressions_import_csv(
                agency=request.user.agency,
                file=form.cleaned_data["file"],
                reason=form.cleaned_data["reason"],
                actor=actor_of(request),
            )
        except CsvFileError as error:
            form.add_error("file", str(error))
        else:
            context = {
                "nav": "suppressions",
                "report": report,
                "filename": form.cleaned_data["file"].name,
            }
            return render(request, "emails/suppressions_import.html", context)
    return _render_list(request, import_form=form, status=400)


@agency_admin_required
@require_http_methods(["GET", "POST"])
def suppression_remove_view(request: HttpRequest, suppression_id: int) -> HttpResponse:
    entry = suppression_get(agency=request.user.agency, suppression_id=suppression_id)
    if entry is None:
        raise Http404("No such suppression")
    form = SuppressionRemoveForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        suppression_remove(
            agency=entry.agency,
            address=entry.address,
            reason=form.cleaned_data["reason"],
            actor=actor_of(request),
        )
        messages.success(request, f"{entry.address} is no longer suppressed.")
        return redirect("suppressions")
    context = {"nav": "suppressions", "entry": entry, "form": form}
    status = 400 if form.is_bound else 200
    return render(request, "emails/suppressions_remove.html", context, status=status)


@agency_admin_required
@require_GET
def suppressions_export_view(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        suppressions_export_csv(agency=request.user.agency), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="suppressions-{date.today()}.csv"'
    return response
