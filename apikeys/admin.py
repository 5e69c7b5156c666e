"""Django admin for API keys: read-only (agencies manage their keys in the portal), except that
staff can revoke a key at once — a leaked key, an agency's request. The digest is never shown."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.admin_support import CappedCountPaginator, ReadOnlyAdminMixin
from accounts.http import actor_of
from apikeys.models import ApiKey
from apikeys.services import apikey_revoke


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, valid_until__lte=now)
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, valid_until__gt=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "label",
        "masked",
        "agency",
        "owner",
        "mode",
        "state",
        "created_at",
        "valid_until",
        "last_used_at",
    )
    list_filter = (StateFilter, "mode", "agency")
    list_select_related = ("agency", "owner")
    search_fields = ("label", "=last_five", "=owner__email")
    search_help_text = "A label, the last five characters of a key, or the owner's exact email."
    ordering = ("-id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    # Everything but the digest: it is not a secret on its own, but nobody needs to see it.
    fields = (
        "label",
        "masked",
        "agency",
        "owner",
        "mode",
        "scopes",
        "contacts",
        "state",
        "created_at",
        "valid_until",
        "revoked_at",
        "last_used_at",
        "predecessor",
    )
    readonly_fields = fields
    actions = ("revoke",)

    @admin.display(description="key")
    def masked(self, key: ApiKey) -> str:
        return f"…{key.last_five}"

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("apikeys.change_apikey")

    @admin.action(description="Revoke selected keys now", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        actor = actor_of(request)
        revoked = 0
        for key in queryset.select_related("agency").filter(revoked_at__isnull=True):
            apikey_revoke(key=key, actor=actor)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} keys.", messages.SUCCESS)
