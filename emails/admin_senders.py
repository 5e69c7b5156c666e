"""Django admin for sender domains and addresses (imported by emails/admin.py).

Read-only pages with actions: every change goes through the sender services, so it is audited
with the staff member as actor and follows the same rules as the portal (one verified owner per
domain, one agency per address). The DKIM private key is in no form, list or export.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.admin_support import ReadOnlyAdminMixin
from accounts.http import actor_of
from emails.models import SenderDomain, VerifiedSender
from emails.services.sender_domains import (
    SenderDomainError,
    sender_domain_approve,
    sender_domain_check,
    sender_domain_suspend,
)
from emails.services.senders import sender_address_approve

SECRET_FIELDS = ("dkim_private_key",)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


@admin.register(SenderDomain)
class SenderDomainAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "domain",
        "agency",
        "status",
        "ownership_check",
        "dkim_check",
        "spf_check",
        "dmarc_check",
        "last_checked_at",
        "failing_since",
    )
    list_filter = ("status", "ownership_check", "dkim_check", "spf_check", "dmarc_check")
    list_select_related = ("agency",)
    search_fields = ("domain", "agency__name")
    ordering = ("domain", "id")
    exclude = SECRET_FIELDS
    actions = ("approve", "suspend", "check_now")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SenderDomain]:
        # The key is never even read for these pages.
        return super().get_queryset(request).defer(*SECRET_FIELDS)

    @admin.action(description="Approve: mark verified now (DNS checks still apply)")
    def approve(self, request: HttpRequest, queryset: QuerySet[SenderDomain]) -> None:
        done = 0
        for domain in queryset.select_related("agency"):
            try:
                sender_domain_approve(domain=domain, actor=actor_of(request))
            except SenderDomainError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(
                request, f"Approved {_plural(done, 'domain', 'domains')}.", messages.SUCCESS
            )

    @admin.action(description="Suspend: refuse emails from it until approved again")
    def suspend(self, request: HttpRequest, queryset: QuerySet[SenderDomain]) -> None:
        count = 0
        for domain in queryset.select_related("agency"):
            sender_domain_suspend(domain=domain, actor=actor_of(request))
            count += 1
        self.message_user(
            request, f"Suspended {_plural(count, 'domain', 'domains')}.", messages.SUCCESS
        )

    @admin.action(description="Check DNS now")
    def check_now(self, request: HttpRequest, queryset: QuerySet[SenderDomain]) -> None:
        for domain in queryset.select_related("agency"):
            result = sender_domain_check(domain=domain, actor=actor_of(request))
            note = f" (no answer for {', '.join(result.unavailable)})" if result.unavailable else ""
            self.message_user(
                request, f"{domain.domain}: {result.domain.get_status_display()}{note}."
            )


@admin.register(VerifiedSender)
class VerifiedSenderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("address", "agency", "verified_at", "confirmation_sent_at", "requested_by")
    list_filter = (("verified_at", admin.EmptyFieldListFilter),)
    list_select_related = ("agency", "requested_by")
    search_fields = ("address", "agency__name")
    ordering = ("address",)
    actions = ("approve",)

    @admin.action(description="Approve: verify without the confirmation link")
    def approve(self, request: HttpRequest, queryset: QuerySet[VerifiedSender]) -> None:
        count = 0
        for sender in queryset.select_related("agency"):
            sender_address_approve(sender=sender, actor=actor_of(request))
            count += 1
        self.message_user(
            request, f"Approved {_plural(count, 'address', 'addresses')}.", messages.SUCCESS
        )
