"""An agency's suppression list: addresses that agency's emails are never sent to (SPEC §5).

Beside the global blacklist (staff's, for every agency), each agency keeps its own list: filled
automatically on complaint and by its admins in the portal, one address or a CSV at a time.
The send API refuses a suppressed recipient exactly like a blacklisted one
(``blocked_addresses_query``).
Every change is audited under the agency.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from django.db import connections, transaction

from accounts.addresses import normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import Agency
from emails.csv_addresses import (
    ALREADY_SUPPRESSED,
    ImportReport,
    entries_csv,
    existing_addresses,
    import_and_audit,
    parse_addresses,
    split_existing,
)
from emails.models import BlacklistEntry, Suppression

_BLOCKED_SQL = (
    "SELECT address FROM {blacklist} WHERE address IN ({placeholders})"
    " UNION SELECT address FROM {suppression} WHERE agency_id = %s AND address IN ({placeholders})"
)


def blocked_addresses_query(*, agency_id: int, addresses: list[str]) -> tuple[str, list]:
    """The query of the ``addresses`` (at least one) that must not be sent to by this agency: on
    the global blacklist or on the agency's suppression list, and its parameters. One column, a
    UNION of two index lookups, written as SQL: it runs on every send (as the guard of the
    email's insert, ``emails.services.send``), and compiling it through the ORM cost five times
    what running it does."""
    connection = connections[BlacklistEntry.objects.db]
    quote = connection.ops.quote_name
    sql = _BLOCKED_SQL.format(
        blacklist=quote(BlacklistEntry._meta.db_table),
        suppression=quote(Suppression._meta.db_table),
        placeholders=", ".join(["%s"] * len(addresses)),
    )
    return sql, [*addresses, agency_id, *addresses]


def _actor_user(actor: Actor):
    return actor.user if actor.user is not None and actor.user.is_authenticated else None


@transaction.atomic
def suppression_add(
    *, agency: Agency, address: str, reason: str, source: str, actor: Actor
) -> tuple[Suppression, bool]:
    """Suppress ``address`` (lowercased; ``ValidationError`` when malformed) for ``agency``.

    Returns ``(entry, created)``. An address already suppressed keeps its first entry (source,
    reason, date), so adding is idempotent and a complaint is never hidden by a later re-add."""
    entry, created = Suppression.objects.get_or_create(
        agency=agency,
        address=normalise_address(address),
        defaults={
            "source": source,
            "reason": reason.strip()[:500],
            "created_by": _actor_user(actor),
        },
    )
    if created:
        audit_record(
            actor=actor,
            action="suppression.added",
            agency=agency,
            target=entry,
            details={"address": entry.address, "source": entry.source, "reason": entry.reason},
        )
    return entry, created


@transaction.atomic
def suppression_remove(*, agency: Agency, address: str, reason: str, actor: Actor) -> bool:
    """Take ``address`` off the agency's list; the next send to it goes out. Returns whether it
    was suppressed. The audit event keeps what the entry said, since the row is gone."""
    entry = (
        Suppression.objects.select_for_update()
        .filter(agency=agency, address=normalise_address(address))
        .first()
    )
    if entry is None:
        return False
    audit_record(
        actor=actor,
        action="suppression.removed",
        agency=agency,
        target=entry,
        details={
            "address": entry.address,
            "reason": reason.strip()[:500],
            "source": entry.source,
            "added_reason": entry.reason,
            "added_at": entry.created_at.isoformat(),
        },
    )
    entry.delete()
    return True


@transaction.atomic
def suppressions_import_csv(
    *, agency: Agency, file: IO[bytes] | IO[str] | bytes | str, actor: Actor, reason: str = ""
) -> ImportReport:
    """Suppress every valid address of a CSV file (``emails.csv_addresses`` describes the
    format) and report each row that was not: malformed, duplicate in the file, or already
    suppressed. A ``reason`` column in the file wins over ``reason`` for its row.

    ``CsvFileError`` when the file as a whole is unreadable; nothing is written then."""
    parsed = parse_addresses(file)
    existing = existing_addresses(Suppression.objects.filter(agency=agency), parsed)
    new, rejected = split_existing(parsed, existing=existing, reason=ALREADY_SUPPRESSED)
    reason = reason.strip()[:500]
    created_by = _actor_user(actor)
    entries = [
        Suppression(
            agency=agency,
            address=row.address,
            source=Suppression.Source.IMPORT,
            reason=row.reason or reason,
            created_by=created_by,
        )
        for row in new
    ]
    return import_and_audit(
        entries=entries,
        rejected=rejected,
        actor=actor,
        action="suppression.imported",
        agency=agency,
        reason=reason,
    )


def suppressions_export_csv(*, agency: Agency) -> Iterator[str]:
    """The agency's whole list as CSV lines (the import reads this format back)."""
    return entries_csv(Suppression.objects.filter(agency=agency))
