"""Reads about sender domains and addresses: the send API's from check and the portal's lists."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, QuerySet

from accounts.models import Agency, AgencyDomain
from emails.addresses import domain_of
from emails.models import SenderDomain, VerifiedSender

SENDING_STATUSES = (SenderDomain.Status.VERIFIED, SenderDomain.Status.FAILING)


def domain_sending_for_another_agency(*, domain: str, agency_id: int) -> bool:
    """Whether another agency sends from ``domain`` (verified, or failing in its grace period):
    a domain belongs to one agency at a time."""
    return (
        SenderDomain.objects.filter(domain=domain, status__in=SENDING_STATUSES)
        .exclude(agency_id=agency_id)
        .exists()
    )


@dataclass(frozen=True)
class FromStanding:
    # The agency may send from the address: verified itself, or on a verified (or failing, in
    # its grace period) sender domain of the agency.
    allowed: bool
    # The address is on one of the agency's own domains (its people's domains or any of its
    # sender domains), which chooses between the two errors of SPEC §4.
    own_domain: bool


def from_address_standing(*, agency_id: int, address: str) -> FromStanding:
    """Whether ``agency_id`` may send from ``address`` (lowercased), in one query.

    Sender domains match exactly: a verified ``hdb.gov.sg`` does not cover ``mail.hdb.gov.sg``
    (each subdomain is added and verified on its own, with its own DKIM key)."""
    domain = domain_of(address)
    sender_domains = SenderDomain.objects.filter(agency_id=agency_id, domain=domain)
    row = (
        Agency.objects.filter(pk=agency_id)
        .values(
            address_verified=Exists(
                VerifiedSender.objects.filter(
                    agency_id=agency_id, address=address, verified_at__isnull=False
                )
            ),
            domain_verified=Exists(sender_domains.filter(status__in=SENDING_STATUSES)),
            sender_domain=Exists(sender_domains),
            agency_domain=Exists(AgencyDomain.objects.filter(agency_id=agency_id, domain=domain)),
        )
        .first()
    )
    if row is None:
        return FromStanding(allowed=False, own_domain=False)
    return FromStanding(
        allowed=row["address_verified"] or row["domain_verified"],
        own_domain=row["sender_domain"] or row["agency_domain"],
    )


def sender_domains_of(*, agency: Agency) -> QuerySet[SenderDomain]:
    # Never the key columns: the portal has no use for them.
    return (
        SenderDomain.objects.filter(agency=agency)
        .defer("dkim_private_key", "dkim_public_key")
        .order_by("domain")
    )


def sender_domain_of(*, agency: Agency, pk: int) -> SenderDomain | None:
    """The agency's domain ``pk``; None for another agency's (the views answer 404)."""
    return (
        SenderDomain.objects.select_related("agency")
        .defer("dkim_private_key")
        .filter(agency=agency, pk=pk)
        .first()
    )


def sender_addresses_of(*, agency: Agency) -> QuerySet[VerifiedSender]:
    return VerifiedSender.objects.filter(agency=agency).order_by("address")


def sender_address_of(*, agency: Agency, pk: int) -> VerifiedSender | None:
    return VerifiedSender.objects.select_related("agency").filter(agency=agency, pk=pk).first()
