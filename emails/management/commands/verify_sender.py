"""``verify_sender ADDRESS [--name NAME]``: staff shortcut to verify a from-address."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emails.services.senders import SenderVerifyError, sender_verify


class Command(BaseCommand):
    help = (
        "Mark ADDRESS as a verified from-address of the agency that owns its domain. "
        "Display names are free-form per email (the send API's `from`: 'Name <address>')."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("address", help="the from-address, e.g. noreply@hdb.gov.sg")
        parser.add_argument(
            "--name",
            help="accepted for compatibility and not stored: the display name is chosen per "
            "email in the send API's `from` field",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            sender, changed = sender_verify(address=options["address"])
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        except SenderVerifyError as error:
            raise CommandError(str(error)) from None

        agency = sender.agency
        if changed:
            self.stdout.write(f"Verified {sender.address} for {agency.name} (id {agency.pk}).")
        else:
            self.stdout.write(
                f"{sender.address} was already verified for {agency.name} (id {agency.pk}) "
                f"since {sender.verified_at:%Y-%m-%d %H:%M} UTC."
            )
        if options["name"]:
            self.stdout.write(
                f"Note: --name is not stored; send with "
                f'"from": "{options["name"]} <{sender.address}>" to show that name.'
            )
