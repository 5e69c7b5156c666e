"""Email address normalisation for the operator commands and the services behind them."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from emails.addresses import domain_of, is_valid_address

__all__ = ["domain_of", "normalise_address"]


def normalise_address(value: str) -> str:
    """``value`` stripped and lowercased, or ``ValidationError``.

    The syntax is the send API's (``emails.addresses``): a bare ASCII ``local@domain`` with a
    real domain, no display name. So an operator cannot blacklist, verify or create a key for an
    address the API would never accept or send to.
    """
    address = (value or "").strip().lower()
    if not is_valid_address(address):
        raise ValidationError(f"{value!r} is not a valid email address", code="invalid")
    return address
