"""The global blacklist: addresses no agency's email is ever sent to (SPEC §5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from django.db import transaction
from django.db.models import QuerySet

from accounts.addresses import normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import User
from emails.csv_addresses import (
    ALREADY_BLACKLISTED,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_ROWS,
    ImportReport,
    entries_csv,
    existing_addresses,
    import_and_audit,
    parse_addresses,
    split_existing,
)
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
    the list keeps its original entry (source, reason and date), so adding is idempotent.
    ``created_by`` defaults to the acting user (a staff member in the admin)."""
    if created_by is None and actor is not None:
        created_by = actor.user
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
            details={"address": entry.address, "source": entry.source, "reason": entry.reason},
        )
    return entry, created


@transaction.atomic
def blacklist_remove(*, address: str, reason: str = "", actor: Actor | None = None) -> bool:
    """Take ``address`` off the blacklist. Returns whether it was on it. The audit event keeps
    what the entry said (source, reason, date), since the row is gone."""
    address = normalise_address(address)
    entry = BlacklistEntry.objects.select_for_update().filter(address=address).first()
    if entry is None:
        return False
    audit_record(
        actor=actor or Actor.system(),
        action="blacklist.removed",
        agency=None,
        target=entry,
        details={
            "address": address,
            "reason": reason.strip()[:500],
            "source": entry.source,
            "added_reason": entry.reason,
            "added_at": entry.created_at.isoformat(),
        },
    )
    entry.delete()
    return True


@transaction.atomic
def blacklist_import_csv(
    *,
    file: IO[bytes] | IO[str] | bytes | str,
    reason: str = "",
    actor: Actor | None = None,
    max_bytes: int | None = MAX_UPLOAD_BYTES,
    max_rows: int | None = MAX_UPLOAD_ROWS,
) -> ImportReport:
    """Blacklist every valid address of a CSV file (``emails.csv_addresses`` describes the
    format) and report each row that was not: malformed, duplicate in the file, or already
    blacklisted. A ``reason`` column in the file wins over ``reason`` for its row.

    ``CsvFileError`` when the file as a whole is unreadable; nothing is written then."""
    actor = actor or Actor.system()
    parsed = parse_addresses(file, max_bytes=max_bytes, max_rows=max_rows)
    existing = existing_addresses(BlacklistEntry.objects.all(), parsed)
    new, rejected = split_existing(parsed, existing=existing, reason=ALREADY_BLACKLISTED)
    reason = reason.strip()[:500]
    entries = [
        BlacklistEntry(
            address=row.address,
            source=BlacklistEntry.Source.STAFF,
            reason=row.reason or reason,
            created_by=actor.user,
        )
        for row in new
    ]
    return import_and_audit(
        entries=entries,
        rejected=rejected,
        actor=actor,
        action="blacklist.imported",
        agency=None,
        reason=reason,
    )


def blacklist_export_csv(*, entries: QuerySet[BlacklistEntry] | None = None) -> Iterator[str]:
    """The blacklist (or ``entries`` of it) as CSV lines; the import reads this format back."""
    return entries_csv(BlacklistEntry.objects.all() if entries is None else entries)


def blacklist_addresses() -> Iterator[str]:
    """Every blacklisted address, sorted (a read, kept beside the writes it mirrors)."""
    return (
        BlacklistEntry.objects.order_by("address")
        .values_list("address", flat=True)
        .iterator(chunk_size=2000)
    )
