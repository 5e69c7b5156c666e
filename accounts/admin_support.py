"""What every staff admin page shares: the staff actor for the audit log, a ModelAdmin base that
audits each save and delete, read-only admins, and a paginator that never counts a big table.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import models
from django.forms import BaseFormSet, ModelForm
from django.http import HttpRequest
from django.utils.functional import cached_property

from accounts.audit import audit_record
from accounts.http import actor_of
from accounts.models import Agency


def jsonable(value: Any) -> Any:
    """A form or model value as the audit log's JSON can hold it (objects by primary key)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (list, tuple, set, frozenset, models.QuerySet)):
        return [jsonable(item) for item in value]
    return str(value)  # dates, times, decimals, UUIDs ...


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows: ``SELECT count(*) FROM (... LIMIT cap + 1)``.

    Django admin counts the filtered rows of every changelist page; over a million emails that
    count alone is a scan of the table. Capped, it stops after ``cap`` matches, and the
    changelist says "more than 10,000" (templates/admin/pagination.html). Nobody pages past page
    100 of a list: they search or filter."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        counted = self.object_list.order_by()[: self.cap + 1].count()
        self.capped = counted > self.cap
        return min(counted, self.cap)

    capped = False


class StaffAuditedAdmin(admin.ModelAdmin):
    """A ModelAdmin whose every add, change and delete — inline rows included — is written to
    the audit log with the staff member's identity and the values that changed.

    ``audit_name`` names the events (``<audit_name>.created|changed|deleted``)."""

    audit_name = ""
    # Never written to the audit log (secrets, hashes).
    audit_exclude: tuple[str, ...] = ("password",)
    show_full_result_count = False
    paginator = CappedCountPaginator

    def _audit_name(self, model: type[models.Model] | None = None) -> str:
        return self.audit_name or (model or self.model)._meta.model_name

    def audit_agency(self, obj: models.Model) -> Agency | None:
        if isinstance(obj, Agency):
            return obj
        return getattr(obj, "agency", None)

    def audit_changes(self, form: ModelForm) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "from": jsonable(form.initial.get(name)),
                "to": jsonable(form.cleaned_data.get(name)),
            }
            for name in form.changed_data
            if name not in self.audit_exclude
        }

    def audit_action(self, obj: models.Model, change: bool, changes: dict[str, Any]) -> str:
        return f"{self._audit_name()}.{'changed' if change else 'created'}"

    def save_model(self, request: HttpRequest, obj: models.Model, form: ModelForm, change: bool):
        changes = self.audit_changes(form)
        super().save_model(request, obj, form, change)
        if change and not changes:
            return
        audit_record(
            actor=actor_of(request),
            action=self.audit_action(obj, change, changes),
            agency=self.audit_agency(obj),
            target=obj,
            details={"changes": changes} if change else {"values": _values(obj)},
        )

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        self._audit_delete(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        for obj in queryset:
            self._audit_delete(request, obj)
        super().delete_queryset(request, queryset)

    def _audit_delete(self, request: HttpRequest, obj: models.Model) -> None:
        agency = self.audit_agency(obj)
        audit_record(
            actor=actor_of(request),
            action=f"{self._audit_name()}.deleted",
            # The agency itself going away would take this event with it.
            agency=None if isinstance(obj, Agency) else agency,
            target=obj,
            details={"values": _values(obj)},
        )

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseFormSet, change):
        super().save_formset(request, form, formset, change)
        actor = actor_of(request)
        agency = self.audit_agency(form.instance)
        name = getattr(formset, "audit_name", "") or formset.model._meta.model_name
        for obj in formset.new_objects:
            audit_record(
                actor=actor,
                action=f"{name}.created",
                agency=agency,
                target=obj,
                details={"values": _values(obj)},
            )
        for obj, fields in formset.changed_objects:
            audit_record(
                actor=actor,
                action=f"{name}.changed",
                agency=agency,
                target=obj,
                details={"fields": fields, "values": _values(obj)},
            )
        for obj in formset.deleted_objects:
            audit_record(
                actor=actor,
                action=f"{name}.deleted",
                agency=agency,
                details={"values": _values(obj), "target": str(obj)},
            )


def _values(obj: models.Model) -> dict[str, Any]:
    return {
        field.attname: jsonable(field.value_from_object(obj))
        for field in obj._meta.concrete_fields
        if not field.primary_key and field.name not in StaffAuditedAdmin.audit_exclude
    }


class ReadOnlyAdminMixin:
    """Staff look, they do not edit: no add, change or delete (actions may still act)."""

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False
