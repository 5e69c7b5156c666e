"""``blacklist add ADDRESS [--reason R]``, ``blacklist remove ADDRESS``, ``blacklist list``."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emails.services.blacklist import blacklist_add, blacklist_addresses, blacklist_remove


class Command(BaseCommand):
    help = "Manage the global blacklist: no email is sent to these addresses, by any agency."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="add|remove|list")
        add = actions.add_parser("add", help="blacklist an address")
        add.add_argument("address")
        add.add_argument("--reason", default="", help="why (shown to staff)")
        remove = actions.add_parser("remove", help="take an address off the blacklist")
        remove.add_argument("address")
        actions.add_parser("list", help="print every blacklisted address, one per line")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            for address in blacklist_addresses():
                self.stdout.write(address)
            return
        try:
            if action == "add":
                entry, created = blacklist_add(address=options["address"], reason=options["reason"])
                if created:
                    self.stdout.write(f"Blacklisted {entry.address}.")
                else:
                    self.stdout.write(
                        f"{entry.address} was already blacklisted "
                        f"({entry.get_source_display()}, {entry.created_at:%Y-%m-%d})."
                    )
            elif not blacklist_remove(address=options["address"]):
                raise CommandError(f"{options['address'].strip().lower()} is not blacklisted")
            else:
                self.stdout.write(f"Removed {options['address'].strip().lower()}.")
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
