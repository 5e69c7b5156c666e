"""CSV files of email addresses: the one parser behind every import (the global blacklist's
command and admin page, an agency's suppression upload) and the one writer behind every export.

An import file is a list of addresses, one per row. A first row that names an ``address`` (or
``email``, ``e-mail``, ``recipient``) column is a header: that column holds the addresses and an
optional ``reason`` column a per-row reason, so a file the export wrote imports as it is.
Without a header the first column is the address and any other column is ignored.

Rows are checked one by one and the good ones are kept: a file with one typo still imports the
rest, and the report names each rejected row by its line number with the reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from django.core.exceptions import ValidationError
from django.db import models

from accounts.addresses import normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import Agency

# An upload through the admin or the portal; the command reads files of any size.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_ROWS = 50_000

MALFORMED = "not a valid email address"
DUPLICATE = "duplicate of line {line}"
ALREADY_BLACKLISTED = "already blacklisted"
ALREADY_SUPPRESSED = "already suppressed"

_ADDRESS_HEADERS = ("address", "email", "email address", "e mail", "e mail address", "recipient")
_REASON_HEADERS = ("reason",)
# A cell a spreadsheet would run as a formula ("CSV injection") is written with a leading quote,
# and an import takes that quote off again.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Rejected values are echoed in reports: a pasted paragraph must not flood the page.
_VALUE_PREVIEW = 100


class CsvFileError(ValueError):
    """The file as a whole cannot be read (not UTF-8 text, too large, no rows)."""


@dataclass(frozen=True)
class CsvRow:
    line: int
    address: str  # normalised: stripped and lowercased
    reason: str | None  # from a ``reason`` column, when the file has one


@dataclass(frozen=True)
class RejectedRow:
    line: int
    value: str
    reason: str


@dataclass
class ParsedCsv:
    rows: list[CsvRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


@dataclass
class ImportReport:
    """What an import did: the addresses it added and every row it did not, with why."""

    added: list[str] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.added) + len(self.rejected)

    @property
    def malformed(self) -> list[RejectedRow]:
        return [row for row in self.rejected if row.reason == MALFORMED]


def _read_text(file: IO[bytes] | IO[str] | bytes | str, max_bytes: int | None) -> str:
    data = (
        file
        if isinstance(file, (bytes, str))
        else file.read(-1 if max_bytes is None else max_bytes + 1)
    )
    if max_bytes is not None and len(data) > max_bytes:
        raise CsvFileError(f"The file is larger than {max_bytes // (1024 * 1024)} MB.")
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvFileError('The file is not UTF-8 text: save it as "CSV UTF-8".') from None


def _unquote_formula(value: str) -> str:
    if value.startswith("'") and value[1:2] in _FORMULA_PREFIXES:
        return value[1:]
    return value


def _columns(header: Sequence[str]) -> tuple[int, int | None] | None:
    """(address column, reason column) when ``header`` is a header row, else None.

    Only a row naming an address column is a header: any other first row is data, so a
    malformed first address shows up in the report instead of vanishing as a "header"."""
    if any("@" in cell for cell in header):
        return None
    names = [
        " ".join(cell.strip().lower().replace("-", " ").replace("_", " ").split())
        for cell in header
    ]
    address = next((i for i, name in enumerate(names) if name in _ADDRESS_HEADERS), None)
    if address is None:
        return None
    reason = next((i for i, name in enumerate(names) if name in _REASON_HEADERS), None)
    return address, reason


def parse_addresses(
    file: IO[bytes] | IO[str] | bytes | str,
    *,
    max_bytes: int | None = MAX_UPLOAD_BYTES,
    max_rows: int | None = MAX_UPLOAD_ROWS,
) -> ParsedCsv:
    """Read an address file: the valid rows (normalised, first occurrence of each address) and
    the rejected ones (malformed, duplicate in the file). Blank rows are skipped silently."""
    reader = csv.reader(io.StringIO(_read_text(file, max_bytes), newline=""))
    parsed = ParsedCsv()
    first_line: dict[str, int] = {}
    address_col, reason_col = 0, None
    seen_first_row = False
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        if not seen_first_row:
            seen_first_row = True
            columns = _columns(cells)
            if columns is not None:
                address_col, reason_col = columns
                continue
        line = reader.line_num
        if max_rows is not None and len(parsed.rows) + len(parsed.rejected) >= max_rows:
            raise CsvFileError(f"The file has more than {max_rows:,} rows: split it.")
        value = _unquote_formula(cells[address_col].strip() if address_col < len(cells) else "")
        try:
            address = normalise_address(value)
        except ValidationError:
            parsed.rejected.append(RejectedRow(line, value[:_VALUE_PREVIEW], MALFORMED))
            continue
        if address in first_line:
            duplicate = DUPLICATE.format(line=first_line[address])
            parsed.rejected.append(RejectedRow(line, address, duplicate))
            continue
        first_line[address] = line
        reason = None
        if reason_col is not None and reason_col < len(cells):
            reason = _unquote_formula(cells[reason_col].strip())[:500] or None
        parsed.rows.append(CsvRow(line=line, address=address, reason=reason))
    if not seen_first_row:
        raise CsvFileError("The file has no addresses.")
    return parsed


def split_existing(
    parsed: ParsedCsv, *, existing: set[str], reason: str
) -> tuple[list[CsvRow], list[RejectedRow]]:
    """The rows still to add, and every rejected row (the parser's and those already listed),
    in file order."""
    new = [row for row in parsed.rows if row.address not in existing]
    already = [
        RejectedRow(row.line, row.address, reason) for row in parsed.rows if row.address in existing
    ]
    rejected = sorted([*parsed.rejected, *already], key=lambda row: row.line)
    return new, rejected


def chunked(values: Sequence[str], size: int = 1000) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class _Line:
    """A write-only file that hands back what ``csv.writer`` writes (for streaming)."""

    def write(self, value: str) -> str:
        return value


def _safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_PREFIXES) else text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """CSV text, one line at a time: a header, then ``rows`` (made safe to open in a
    spreadsheet). Suits ``StreamingHttpResponse`` and writing to a file alike."""
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([_safe_cell(value) for value in row])


EXPORT_HEADER = ("address", "source", "reason", "created_at", "created_by")


def entries_csv(entries: models.QuerySet, *, with_agency: bool = False) -> Iterator[str]:
    """Blacklist or suppression ``entries`` as CSV lines, in the format the imports read back;
    ``with_agency`` puts the agency's name first (staff's export across agencies)."""
    if with_agency:
        entries = entries.order_by("agency_id", "address")
        leading, header = ("agency__name",), ("agency", *EXPORT_HEADER)
    else:
        entries = entries.order_by("address")
        leading, header = (), EXPORT_HEADER
    rows = entries.values_list(
        *leading, "address", "source", "reason", "created_at", "created_by__email"
    ).iterator(chunk_size=2000)
    return csv_lines(
        header,
        ((*row[:-2], row[-2].isoformat(), row[-1] or "") for row in rows),
    )


def existing_addresses(listed: models.QuerySet, parsed: ParsedCsv) -> set[str]:
    """Which of the file's addresses ``listed`` (a queryset with an ``address`` column)
    already holds, looked up in chunks so a 50,000-row file stays within query limits."""
    existing: set[str] = set()
    for chunk in chunked([row.address for row in parsed.rows]):
        existing.update(listed.filter(address__in=chunk).values_list("address", flat=True))
    return existing


# An import's audit event lists what it added; beyond this only the count is kept.
AUDITED_ADDRESSES = 1000


def import_and_audit(
    *,
    entries: list[models.Model],
    rejected: list[RejectedRow],
    actor: Actor,
    action: str,
    agency: Agency | None,
    reason: str,
) -> ImportReport:
    """Insert an import's new ``entries`` and write one audit event for the whole import.

    ``ignore_conflicts``: an address listed concurrently since the caller's lookup (a hard
    bounce, another request) is simply already there and keeps its own row."""
    if entries:
        type(entries[0]).objects.bulk_create(entries, batch_size=1000, ignore_conflicts=True)
    report = ImportReport(added=[entry.address for entry in entries], rejected=rejected)
    if report.rows:
        audit_record(
            actor=actor,
            action=action,
            agency=agency,
            details={
                "reason": reason,
                "added": len(report.added),
                "rejected": len(report.rejected),
                "addresses": report.added[:AUDITED_ADDRESSES],
            },
        )
    return report
