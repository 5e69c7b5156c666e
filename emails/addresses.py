"""Email address syntax as the send API accepts it: plain ASCII ``local@domain`` with a real
domain (at least two labels, an alphabetic or punycode TLD). Quoted local parts, IP literals,
whitespace and control characters are refused, so an accepted address can never carry a header
or an SMTP command."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
ADDRESS_RE = re.compile(rf"^(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>(?:{_LABEL}\.)+{_TLD})$")

# "Display Name <address>" or a bare address; the name may be quoted.
_NAME_ADDR_RE = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<address>[^<>]*)>\s*$")
_SPECIALS = set('()<>@,;:\\".[]')
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def address_match(field: str, term: str) -> Q:
    """A search for ``term`` in an address ``field``: a whole address is an exact match,
    anything else a prefix ("alice", "alice@hdb"). Both are served by a btree index."""
    term = term.strip().lower()
    if is_valid_address(term):
        return Q(**{field: term})
    return Q(**{f"{field}__startswith": term})


def is_valid_address(value: str) -> bool:
    if not value.isascii() or len(value) > 254:
        return False
    match = ADDRESS_RE.match(value)
    return bool(match) and len(match["local"]) <= 64


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


@dataclass(frozen=True)
class Mailbox:
    name: str
    address: str  # lowercased

    def __str__(self) -> str:
        if not self.name:
            return self.address
        name = self.name
        if any(char in _SPECIALS for char in name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.address}>"


def parse_mailbox(value: str) -> Mailbox | None:
    """Parse ``Name <address>`` or ``address``; None when it is not one valid mailbox.

    A display name with line breaks or other control characters is refused rather than
    cleaned: it could only be an attempt at header injection."""
    match = _NAME_ADDR_RE.match(value)
    if match:
        name, address = match["name"].strip(), match["address"].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    else:
        name, address = "", value.strip()
    if _CONTROL_RE.search(name) or len(name) > 200 or not is_valid_address(address):
        return None
    return Mailbox(name=name, address=address.lower())


def default_from_mailbox() -> Mailbox:
    mailbox = parse_mailbox(settings.DEFAULT_FROM_EMAIL)
    if mailbox is None:
        raise ValueError(
            f"DEFAULT_FROM_EMAIL is not a valid mailbox: {settings.DEFAULT_FROM_EMAIL!r}"
        )
    return mailbox


def default_from_addresses() -> set[str]:
    """Addresses that count as the service's default sender."""
    aliases = {alias.lower() for alias in settings.DEFAULT_FROM_ALIASES}
    return aliases | {default_from_mailbox().address}
