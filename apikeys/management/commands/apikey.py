"""``apikey list [--email E]``, ``apikey rotate ID [--grace 1h|24h|7d|30d|0]``,
``apikey revoke ID``.

Operators script these: ``list`` prints one tab-separated line per key (id, label, last five,
valid_until, state); ``rotate`` prints the successor's plaintext key alone on the last line.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apikeys.models import ApiKey
from apikeys.services import GRACE_PERIODS, apikey_revoke, apikey_rotate


class Command(BaseCommand):
    help = "List, rotate and revoke API keys."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="one line per key")
        listing.add_argument("--email", help="only the keys owned by this user")
        rotate = actions.add_parser("rotate", help="issue a successor; the old key expires later")
        rotate.add_argument("id", type=int)
        rotate.add_argument(
            "--grace",
            choices=list(GRACE_PERIODS),
            default="24h",
            help="how long the old key keeps working (default 24h; 0 = stops now)",
        )
        revoke = actions.add_parser("revoke", help="stop a key at once")
        revoke.add_argument("id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _key(self, key_id: int) -> ApiKey:
        key = ApiKey.objects.select_related("agency", "owner").filter(pk=key_id).first()
        if key is None:
            raise CommandError(f"no API key with id {key_id}")
        return key

    def _list(self, options: dict[str, Any]) -> None:
        keys = ApiKey.objects.select_related("owner").order_by("pk")
        if options["email"]:
            keys = keys.filter(owner__email__iexact=options["email"].strip())
        for key in keys:
            self.stdout.write(
                "\t".join(
                    [
                        str(key.pk),
                        key.label,
                        key.last_five,
                        key.valid_until.isoformat(),
                        key.state,
                    ]
                )
            )

    def _rotate(self, options: dict[str, Any]) -> None:
        key = self._key(options["id"])
        try:
            created = apikey_rotate(key=key, grace=GRACE_PERIODS[options["grace"]])
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        key = created.key.predecessor
        self.stdout.write(
            f"Rotated key {key.pk} ({key.label}); it stops working at "
            f"{key.valid_until.isoformat()}. New key id {created.key.pk}:"
        )
        self.stdout.write(created.plaintext)

    def _revoke(self, options: dict[str, Any]) -> None:
        key = apikey_revoke(key=self._key(options["id"]))
        self.stdout.write(f"Revoked key {key.pk} ({key.label}) at {key.revoked_at.isoformat()}")
