"""Django admin for agencies, users and the audit log (service staff, SPEC §1)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from accounts.admin_support import (
    CappedCountPaginator,
    ReadOnlyAdminMixin,
    StaffAuditedAdmin,
)
from accounts.audit import audit_record
from accounts.http import actor_of
from accounts.models import Agency, AgencyDomain, AuditEvent, User
from accounts.services import agency_set_active


class AgencyDomainForm(forms.ModelForm):
    def clean_domain(self) -> str:
        return self.cleaned_data["domain"].strip().lower()


class AgencyDomainInline(admin.TabularInline):
    model = AgencyDomain
    form = AgencyDomainForm
    extra = 0
    fields = ("domain",)
    verbose_name = "email domain"
    verbose_name_plural = "email domains (people with these addresses belong to the agency)"


@admin.register(Agency)
class AgencyAdmin(StaffAuditedAdmin):
    audit_name = "agency"
    list_display = ("name", "domain_list", "is_active", "rate_limit_per_second", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "domains__domain")
    ordering = ("name",)
    fields = ("name", "is_active", "rate_limit_per_second", "created_at")
    readonly_fields = ("created_at",)
    inlines = (AgencyDomainInline,)
    actions = ("suspend", "reactivate")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agency]:
        return super().get_queryset(request).prefetch_related("domains")

    def get_formsets_with_inlines(self, request, obj=None):
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            formset.audit_name = "agency_domain"
            yield formset, inline

    @admin.display(description="domains")
    def domain_list(self, agency: Agency) -> str:
        return ", ".join(domain.domain for domain in agency.domains.all())

    def audit_action(self, obj: Agency, change: bool, changes: dict[str, Any]) -> str:
        if change and "is_active" in changes:
            return "agency.reactivated" if obj.is_active else "agency.suspended"
        return super().audit_action(obj, change, changes)

    def has_delete_permission(self, request: HttpRequest, obj: Agency | None = None) -> bool:
        # Deleting an agency would delete its emails and its audit trail: suspend it instead.
        return False

    @admin.action(description="Suspend selected agencies (their API keys get 403)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Agency]) -> None:
        self._set_active(request, queryset, is_active=False, done="Suspended")

    @admin.action(description="Reactivate selected agencies")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Agency]) -> None:
        self._set_active(request, queryset, is_active=True, done="Reactivated")

    def _set_active(
        self, request: HttpRequest, queryset: QuerySet[Agency], *, is_active: bool, done: str
    ) -> None:
        actor = actor_of(request)
        changed = sum(
            agency_set_active(agency=agency, is_active=is_active, actor=actor)
            for agency in queryset
        )
        self.message_user(request, f"{done} {changed} agencies.", messages.SUCCESS)


class StaffUserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("A user with this email already exists.")
        return email


class StaffUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


@admin.register(User)
class UserAdmin(StaffAuditedAdmin, BaseUserAdmin):
    audit_name = "user"
    form = StaffUserChangeForm
    add_form = StaffUserCreationForm
    list_display = ("email", "agency", "role", "is_active", "is_staff", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active", "role")
    list_select_related = ("agency",)
    search_fields = ("email",)
    ordering = ("email",)
    autocomplete_fields = ("agency",)
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Agency", {"fields": ("agency", "role")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "agency", "role", "usable_password", "password1", "password2"),
            },
        ),
    )

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Deleting a user deletes their API keys and detaches their audit trail: deactivate.
        return False

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = ""):
        response: HttpResponse = super().user_change_password(request, id, form_url)
        # A redirect after a POST is Django's "password changed".
        if request.method == "POST" and response.status_code == 302:
            user = User.objects.get(pk=id)
            audit_record(
                actor=actor_of(request),
                action="user.password_set",
                agency=user.agency,
                target=user,
                details={"usable": user.has_usable_password()},
            )
        return response


class ActionFilter(admin.SimpleListFilter):
    """Filter by action (``apikey.revoked``) or by family (``apikey``)."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        # DISTINCT over the (action, created_at) index: one pass over the index, not the table.
        actions = list(
            AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()
        )
        families = sorted({action.split(".", 1)[0] for action in actions})
        return [(f"{family}.*", f"{family}: all") for family in families] + [
            (action, action) for action in actions
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if value.endswith(".*"):
            return queryset.filter(action__startswith=value[:-1])
        return queryset.filter(action=value)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "action",
        "actor_kind",
        "actor_email",
        "agency",
        "target_repr",
        "ip_address",
    )
    list_filter = ("actor_kind", ActionFilter, "agency", "created_at")
    list_select_related = ("agency",)
    search_fields = ("=actor_email", "=target_id", "target_repr")
    search_help_text = "An actor's exact email, a target's id, or part of the target's name."
    ordering = ("-id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    fields = (
        "created_at",
        "action",
        "agency",
        "actor_kind",
        "actor",
        "actor_email",
        "ip_address",
        "target_type",
        "target_id",
        "target_repr",
        "details_json",
    )
    readonly_fields = fields

    @admin.display(description="details")
    def details_json(self, event: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.details, indent=2, sort_keys=True))
