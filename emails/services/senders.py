"""From-addresses verified for an agency (SPEC §7)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.addresses import domain_of, normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import Agency, AgencyDomain
from emails.models import VerifiedSender


class SenderVerifyError(Exception):
    """The address cannot be verified; ``str(error)`` says why, for staff."""


class SenderDomainNotOwned(SenderVerifyError):
    pass


class SenderTakenByOtherAgency(SenderVerifyError):
    pass


@transaction.atomic
def sender_verify(
    *, address: str, agency: Agency | None = None, actor: Actor | None = None
) -> tuple[VerifiedSender, bool]:
    """Mark ``address`` verified for ``agency``. Returns ``(sender, changed)``; ``changed`` is
    false when it was already verified for that agency (``verified_at`` is kept).

    Without ``agency`` (the staff shortcut) the agency is the one with an ``AgencyDomain`` equal
    to the address's domain; subdomains are not matched. An address is verified for at most one
    agency: one already verified, or awaiting confirmation, for another agency is refused rather
    than silently moved.
    """
    address = normalise_address(address)
    if agency is None:
        owner = AgencyDomain.objects.select_related("agency").filter(domain=domain_of(address))
        domain = owner.first()
        if domain is None:
            raise SenderDomainNotOwned(
                f"no agency owns the domain {domain_of(address)}; add it to an agency first"
            )
        agency = domain.agency

    now = timezone.now()
    sender, created = VerifiedSender.objects.select_for_update().get_or_create(
        address=address, defaults={"agency": agency, "verified_at": now}
    )
    if created:
        _audit_verified(sender, actor=actor)
        return sender, True
    if sender.agency_id != agency.pk:
        state = "verified" if sender.verified_at else "awaiting verification"
        raise SenderTakenByOtherAgency(
            f"{address} is already {state} for another agency ({sender.agency.name}, "
            f"id {sender.agency_id})"
        )
    if sender.verified_at is not None:
        return sender, False
    sender.verified_at = now
    sender.save(update_fields=["verified_at"])
    _audit_verified(sender, actor=actor)
    return sender, True


def _audit_verified(sender: VerifiedSender, *, actor: Actor | None) -> None:
    audit_record(
        actor=actor or Actor.system(), action="sender.verified", agency=sender.agency, target=sender
    )
