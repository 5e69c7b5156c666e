"""Django admin for emails (read-only), the global blacklist and agencies' suppression lists.

Built for a large database: every changelist is capped-count paginated, ordered along an index,
and searched through ``get_search_results`` overrides that turn a term into one indexed lookup
(an id, an address or its prefix, a tag) instead of Django's ``LIKE '%term%'`` on every column.
"""

from __future__ import annotations

import re
from datetime import date

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.addresses import normalise_address
from accounts.admin_support import CappedCountPaginator, ReadOnlyAdminMixin
from accounts.http import actor_of
from emails import admin_senders  # noqa: F401  (registers the sender admin)
from emails.addresses import address_match
from emails.csv_addresses import CsvFileError, entries_csv
from emails.models import BlacklistEntry, Email, EmailEvent, EmailRecipient, Suppression
from emails.services.blacklist import (
    blacklist_add,
    blacklist_export_csv,
    blacklist_import_csv,
    blacklist_remove,
)
from emails.services.suppressions import suppression_remove

_ID = re.compile(r"[0-9]{1,18}")


def _csv_response(lines, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- emails -----------------------------------------------------------------------------------


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


class EmailRecipientInline(ReadOnlyInline):
    model = EmailRecipient
    fields = ("kind", "address", "status", "error_code", "error_sub_type", "updated_at")
    readonly_fields = fields
    verbose_name_plural = "recipients"


class EmailEventInline(ReadOnlyInline):
    model = EmailEvent
    fields = ("occurred_at", "type", "recipient_address", "detail", "provider_event_id")
    readonly_fields = fields
    ordering = ("occurred_at", "id")
    verbose_name_plural = "events (what happened, in order)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailEvent]:
        return super().get_queryset(request).select_related("recipient")

    @admin.display(description="recipient")
    def recipient_address(self, event: EmailEvent) -> str:
        return event.recipient.address if event.recipient else "—"


class ModeFilter(admin.SimpleListFilter):
    """Live or test. Fixed choices: Django's default filter for a plain CharField would run
    ``SELECT DISTINCT mode`` over every email on each page view."""

    title = "mode"
    parameter_name = "mode"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("live", "Live"), ("test", "Test")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Email]) -> QuerySet[Email]:
        return queryset.filter(mode=self.value()) if self.value() else queryset


@admin.register(Email)
class EmailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "recipient", "agency", "status", "error_code", "tag", "created_at")
    list_display_links = ("id", "recipient")
    list_filter = ("status", ModeFilter, "agency", "created_at")
    list_select_related = ("agency",)
    # Newest first by id (the order emails were recorded in): the primary key, or an index
    # that ends in id for each filter and search, gives a page without sorting the table.
    ordering = ("-id",)
    # search_fields only makes Django show the search box; get_search_results does the work.
    search_fields = ("recipient",)
    search_help_text = (
        "An email id, a recipient address (or its beginning, e.g. “alice@”), "
        "or a tag (“tag:2024” for a tag made of digits)."
    )
    show_full_result_count = False
    paginator = CappedCountPaginator
    inlines = (EmailRecipientInline, EmailEventInline)
    # Metadata only: staff see where an email went and what happened to it, not its body.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "agency",
                    "api_key",
                    "mode",
                    "sender",
                    "recipient",
                    "reply_to",
                    "cc",
                    "bcc",
                    "subject",
                    "tag",
                    "classification",
                    "disable_tracking",
                    "attachments_metadata",
                )
            },
        ),
        (
            "Delivery",
            {
                "fields": (
                    "status",
                    "error_code",
                    "error_sub_type",
                    "last_smtp_response",
                    "attempts",
                    "recipient_blocked",
                )
            },
        ),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "updated_at",
                    "accepted_at",
                    "sent_at",
                    "delivered_at",
                    "opened_at",
                )
            },
        ),
        ("Identifiers", {"fields": ("message_id", "provider_message_id", "idempotency_key")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Email | None = None):
        return [field for _, options in self.fieldsets for field in options["fields"]]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Email]:
        # The raw input and the sanitised HTML can be a megabyte each: never load them here.
        return super().get_queryset(request).defer("params", "html")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.lower().startswith("tag:"):
            return queryset.filter(tag=term[4:].strip()), False
        if _ID.fullmatch(term):
            return queryset.filter(pk=int(term)), False
        if "@" in term:
            return queryset.filter(address_match("recipient", term)), False
        return queryset.filter(tag=term), False

    @admin.display(description="recipient on a block list?")
    def recipient_blocked(self, email: Email) -> str:
        """Why the next email to this recipient would be refused, with the way out."""
        entry = BlacklistEntry.objects.filter(address=email.recipient).first()
        suppression = Suppression.objects.filter(
            agency_id=email.agency_id, address=email.recipient
        ).first()
        parts = []
        if entry is not None:
            parts.append(
                format_html(
                    'Blacklisted ({}, {}) — <a href="{}">remove from the blacklist…</a>',
                    entry.get_source_display(),
                    f"{entry.created_at:%Y-%m-%d}",
                    reverse("admin:emails_blacklistentry_delete", args=[entry.pk]),
                )
            )
        if suppression is not None:
            parts.append(
                format_html(
                    'Suppressed by the agency ({}, {}) — <a href="{}">view…</a>',
                    suppression.get_source_display(),
                    f"{suppression.created_at:%Y-%m-%d}",
                    reverse("admin:emails_suppression_change", args=[suppression.pk]),
                )
            )
        return format_html("<br>".join(["{}"] * len(parts)), *parts) if parts else "No"


# --- removal with a reason (blacklist and suppressions) ----------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Recorded in the audit log with your name.",
    )


class RemoveWithReasonAdmin(admin.ModelAdmin):
    """Entries are never edited, only added and removed; removing asks for a reason, which goes
    to the audit log. Replaces Django's delete page and ``delete_selected`` action."""

    ordering = ("-id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ("remove_selected", "export_selected")

    def remove_entry(self, request: HttpRequest, obj: Model, reason: str) -> None:
        raise NotImplementedError

    def export_lines(self, queryset: QuerySet):
        raise NotImplementedError

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(address_match("address", search_term)), False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def _removal_page(self, request, *, objects, form, count: int, selected=None) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Remove {count} {self.opts.verbose_name if count == 1 else 'entries'}",
            "opts": self.opts,
            "objects": objects,
            "count": count,
            "form": form,
            "selected": selected,
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/emails/remove_with_reason.html", context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_delete_permission(request, obj):
            raise PermissionDenied
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            self.remove_entry(request, obj, form.cleaned_data["reason"])
            self.message_user(request, f"Removed {obj}.", messages.SUCCESS)
            changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            return HttpResponseRedirect(changelist)
        return self._removal_page(request, objects=[obj], form=form, count=1)

    @admin.action(description="Remove selected entries (with a reason)…", permissions=["delete"])
    def remove_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = ReasonForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            removed = 0
            for obj in queryset:
                self.remove_entry(request, obj, form.cleaned_data["reason"])
                removed += 1
            self.message_user(request, f"Removed {removed} entries.", messages.SUCCESS)
            return None
        count = queryset.count()
        return self._removal_page(
            request,
            objects=queryset[:100],
            form=form,
            count=count,
            selected=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        )

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        name = self.opts.model_name
        return _csv_response(self.export_lines(queryset), f"{name}-{date.today()}.csv")


# --- the global blacklist ---------------------------------------------------------------------


class BlacklistAddForm(forms.ModelForm):
    class Meta:
        model = BlacklistEntry
        fields = ("address", "reason")
        help_texts = {"reason": "Why no agency may send to this address (shown to staff)."}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "reason" in self.fields:  # the read-only change page has no fields
            self.fields["reason"].required = True

    def clean_address(self) -> str:
        try:
            address = normalise_address(self.cleaned_data["address"])
        except ValidationError:
            raise ValidationError("Enter a valid email address.") from None
        entry = BlacklistEntry.objects.filter(address=address).first()
        if entry is not None:
            raise ValidationError(
                f"{address} is already blacklisted ({entry.get_source_display()}, "
                f"{entry.created_at:%Y-%m-%d})."
            )
        return address

    def validate_unique(self) -> None:
        # clean_address says it better.
        pass


class BlacklistImportForm(forms.Form):
    file = forms.FileField(
        help_text="A CSV file: one address per row, or a header row with an “address” column "
        "(and an optional “reason” column). UTF-8, at most 5 MB."
    )
    reason = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="For every row without a reason of its own.",
    )


@admin.register(BlacklistEntry)
class BlacklistEntryAdmin(RemoveWithReasonAdmin):
    form = BlacklistAddForm
    list_display = ("address", "source", "reason", "created_at", "created_by")
    list_filter = ("source", "created_at")
    list_select_related = ("created_by",)
    search_fields = ("address",)
    search_help_text = "An address, or its beginning."
    readonly_fields = ("source", "created_at", "created_by")

    def get_fields(self, request: HttpRequest, obj: BlacklistEntry | None = None):
        if obj is None:
            return ("address", "reason")
        return ("address", "reason", "source", "created_at", "created_by")

    def save_model(self, request, obj: BlacklistEntry, form, change: bool) -> None:
        entry, _ = blacklist_add(
            address=obj.address,
            reason=obj.reason,
            source=BlacklistEntry.Source.STAFF,
            actor=actor_of(request),
        )
        # The admin redirects to the saved object: hand it the row the service wrote.
        obj.pk, obj.created_at, obj.created_by = entry.pk, entry.created_at, entry.created_by

    def remove_entry(self, request: HttpRequest, obj: BlacklistEntry, reason: str) -> None:
        blacklist_remove(address=obj.address, reason=reason, actor=actor_of(request))

    def export_lines(self, queryset: QuerySet[BlacklistEntry]):
        return blacklist_export_csv(entries=queryset)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="emails_blacklistentry_import"),
            path("export/", view(self.export_view), name="emails_blacklistentry_export"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        report = None
        form = BlacklistImportForm(
            request.POST if request.method == "POST" else None,
            request.FILES if request.method == "POST" else None,
        )
        if form.is_valid():
            try:
                report = blacklist_import_csv(
                    file=form.cleaned_data["file"],
                    reason=form.cleaned_data["reason"],
                    actor=actor_of(request),
                )
            except CsvFileError as error:
                form.add_error("file", str(error))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import addresses into the blacklist",
            "opts": self.opts,
            "form": form,
            "report": report,
        }
        return TemplateResponse(request, "admin/emails/blacklistentry/import.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return _csv_response(blacklist_export_csv(), f"blacklist-{date.today()}.csv")


# --- agencies' suppression lists --------------------------------------------------------------


@admin.register(Suppression)
class SuppressionAdmin(RemoveWithReasonAdmin):
    """Each agency's own list, which its admins manage in the portal. Staff look, and can
    remove an entry (with a reason, audited under the agency) when an agency asks them to."""

    list_display = ("address", "agency", "source", "reason", "created_at", "created_by")
    list_filter = ("agency", "source")
    list_select_related = ("agency", "created_by")
    search_fields = ("address",)
    search_help_text = "An address, or its beginning."
    fields = ("address", "agency", "source", "reason", "created_at", "created_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def remove_entry(self, request: HttpRequest, obj: Suppression, reason: str) -> None:
        suppression_remove(
            agency=obj.agency, address=obj.address, reason=reason, actor=actor_of(request)
        )

    def export_lines(self, queryset: QuerySet[Suppression]):
        # Staff's export spans agencies: each line is led by its agency's name.
        return entries_csv(queryset, with_agency=True)
