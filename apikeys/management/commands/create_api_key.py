"""``create_api_key --email E [--label L] [--rate-limit N] [--test] [--scopes send,read]``.

Operators' scripts read the plaintext key from the last stdout line (``| tail -n 1``); every other
line is for people and may change.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.addresses import normalise_address
from accounts.services import agency_set_rate_limit, user_get_or_create_for_email
from apikeys.services import SCOPES, apikey_create

DEFAULT_LABEL = "Command-line key"


def parse_scopes(value: str) -> list[str]:
    scopes = [scope.strip().lower() for scope in value.split(",") if scope.strip()]
    if not scopes:
        raise CommandError(f"--scopes needs at least one of: {', '.join(SCOPES)}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise CommandError(
            f"unknown scope(s): {', '.join(unknown)}; choose from: {', '.join(SCOPES)}"
        )
    return [scope for scope in SCOPES if scope in scopes]


def _state(created: bool) -> str:
    return "created" if created else "existing"


class Command(BaseCommand):
    help = (
        "Create an API key for EMAIL, creating its agency (from the email's domain) and user if "
        "missing. The plaintext key is printed alone on the last line."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--email", required=True, help="the key owner's email address")
        parser.add_argument("--label", default=DEFAULT_LABEL, help="a name for the key")
        parser.add_argument(
            "--rate-limit",
            type=int,
            dest="rate_limit",
            metavar="N",
            help="set the agency's sends per second (0 = unlimited)",
        )
        parser.add_argument(
            "--test", action="store_true", help="a test-mode key: recorded, never delivered"
        )
        parser.add_argument(
            "--scopes",
            default=",".join(SCOPES),
            help=f"comma-separated scopes (default: {','.join(SCOPES)})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            email = normalise_address(options["email"])
        except ValidationError as error:
            raise CommandError(f"--email: {error.messages[0]}") from None
        label = options["label"].strip()
        if not label or len(label) > 100:
            raise CommandError("--label must be 1 to 100 characters")
        rate_limit = options["rate_limit"]
        if rate_limit is not None and rate_limit < 0:
            raise CommandError("--rate-limit must be 0 (unlimited) or a positive number")
        scopes = parse_scopes(options["scopes"])

        with transaction.atomic():
            # An existing user keeps the agency they belong to; the key is that agency's.
            user, user_created, agency_created = user_get_or_create_for_email(email=email)
            agency = user.agency
            if not user.is_active:
                raise CommandError(f"user {user.email} is deactivated")
            if not agency.is_active:
                raise CommandError(f"agency {agency.name} is deactivated")
            if rate_limit is not None:
                agency_set_rate_limit(agency=agency, per_second=rate_limit)
            try:
                created = apikey_create(
                    owner=user, label=label, test=options["test"], scopes=scopes
                )
            except ValidationError as error:
                raise CommandError(error.messages[0]) from None

        key = created.key
        limit = agency.rate_limit_per_second
        self.stdout.write(f"Agency:     {agency.name} (id {agency.pk}, {_state(agency_created)})")
        self.stdout.write(f"User:       {user.email} ({user.role}, {_state(user_created)})")
        self.stdout.write(f"Rate limit: {f'{limit} sends/s' if limit else 'unlimited'}")
        self.stdout.write(
            f"API key:    id {key.pk}, {key.label!r}, {key.mode}, scopes {','.join(key.scopes)}, "
            f"valid until {key.valid_until:%Y-%m-%d}"
        )
        self.stdout.write("The key is shown once, on the next line:")
        self.stdout.write(created.plaintext)
