"""The global blacklist from the command line:

``blacklist add ADDRESS [--reason R]``, ``blacklist remove ADDRESS [--reason R]``, ``blacklist
list``, ``blacklist import FILE [--reason R]`` (``-`` reads stdin) and ``blacklist export [FILE]``.

``import`` adds every valid row and prints one line per row it did not add
(``line 4: not-an-address: not a valid email address``), then a summary. It exits 1 when a row
was malformed — the file needs a person's attention — and 0 when the only rejections are
addresses already blacklisted or repeated in the file, so that re-running an import succeeds.
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emails.csv_addresses import CsvFileError
from emails.services.blacklist import (
    blacklist_add,
    blacklist_addresses,
    blacklist_export_csv,
    blacklist_import_csv,
    blacklist_remove,
)


class Command(BaseCommand):
    help = "Manage the global blacklist: no email is sent to these addresses, by any agency."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="add|remove|list|import|export"
        )
        add = actions.add_parser("add", help="blacklist an address")
        add.add_argument("address")
        add.add_argument("--reason", default="", help="why (shown to staff)")
        remove = actions.add_parser("remove", help="take an address off the blacklist")
        remove.add_argument("address")
        remove.add_argument("--reason", default="", help="why (kept in the audit log)")
        actions.add_parser("list", help="print every blacklisted address, one per line")
        load = actions.add_parser("import", help="blacklist every address of a CSV file")
        load.add_argument("file", help="a CSV file of addresses, or - for stdin")
        load.add_argument("--reason", default="", help="for rows without a reason column")
        dump = actions.add_parser("export", help="write the blacklist as CSV")
        dump.add_argument("file", nargs="?", default="-", help="a file (default: stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            for address in blacklist_addresses():
                self.stdout.write(address)
        elif action == "import":
            self._import(options["file"], options["reason"])
        elif action == "export":
            self._export(options["file"])
        else:
            try:
                self._add_or_remove(action, options)
            except ValidationError as error:
                raise CommandError(error.messages[0]) from None

    def _add_or_remove(self, action: str, options: dict[str, Any]) -> None:
        address = options["address"]
        if action == "add":
            entry, created = blacklist_add(address=address, reason=options["reason"])
            if created:
                self.stdout.write(f"Blacklisted {entry.address}.")
            else:
                self.stdout.write(
                    f"{entry.address} was already blacklisted "
                    f"({entry.get_source_display()}, {entry.created_at:%Y-%m-%d})."
                )
        elif not blacklist_remove(address=address, reason=options["reason"]):
            raise CommandError(f"{address.strip().lower()} is not blacklisted")
        else:
            self.stdout.write(f"Removed {address.strip().lower()}.")

    def _import(self, path: str, reason: str) -> None:
        try:
            if path == "-":
                report = blacklist_import_csv(
                    file=sys.stdin.buffer.read(), reason=reason, max_bytes=None, max_rows=None
                )
            else:
                with open(path, "rb") as file:
                    report = blacklist_import_csv(
                        file=file, reason=reason, max_bytes=None, max_rows=None
                    )
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None
        except CsvFileError as error:
            raise CommandError(str(error)) from None
        for row in report.rejected:
            self.stdout.write(f"line {row.line}: {row.value}: {row.reason}")
        self.stdout.write(
            f"Added {len(report.added)} of {report.rows} rows; {len(report.rejected)} not added."
        )
        if report.malformed:
            raise CommandError(f"{len(report.malformed)} rows are not valid email addresses")

    def _export(self, path: str) -> None:
        if path == "-":
            for line in blacklist_export_csv():
                self.stdout.write(line, ending="")
            return
        try:
            with open(path, "w", encoding="utf-8", newline="") as file:
                file.writelines(blacklist_export_csv())
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror}") from None
