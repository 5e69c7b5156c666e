"""The global blacklist: addresses no agency's email is ever sent to (SPEC §5)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import transaction

from accounts.addresses import normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import User
from emails.models import BlacklistEntry


@transaction.atomic
def blacklist_add(
    *,
    address: str,
    reason: str = "",
    source: str = BlacklistEntry.Source.STAFF,
    created_by: User | None = None,
    actor: Actor | None = None,
) -> tuple[BlacklistEntry, bool]:
    """Blacklist ``address`` (lowercased). Returns ``(entry, created)``; an address already on
    the list keeps its original entry (source, reason and date), so adding is idempotent."""
    entry, created = BlacklistEntry.objects.get_or_create(
        address=normalise_address(address),
        defaults={"reason": reason.strip()[:500], "source": source, "created_by": created_by},
    )
    if created:
        audit_record(
            actor=actor or (Actor.of(created_by) if created_by else Actor.system()),
            action="blacklist.added",
            agency=None,
            target=entry,
            details={"source": entry.source, "reason": entry.reason},
        )
    return entry, created


@transaction.atomic
def blacklist_remove(*, address: str, actor: Actor | None = None) -> bool:
    """Take ``address`` off the blacklist. Returns whether it was on it."""
    address = normalise_address(address)
    deleted, _ = BlacklistEntry.objects.filter(address=address).delete()
    if deleted:
        audit_record(
            actor=actor or Actor.system(),
            action="blacklist.removed",
            agency=None,
            details={"address": address},
        )
    return deleted > 0


def blacklist_addresses() -> Iterator[str]:
    """Every blacklisted address, sorted (a read, kept beside the writes it mirrors)."""
    return (
        BlacklistEntry.objects.order_by("address")
        .values_list("address", flat=True)
        .iterator(chunk_size=2000)
    )
