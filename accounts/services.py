"""Agencies and users: creation paths that do not go through the portal's sign-up."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.addresses import domain_of, normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import Agency, AgencyDomain, User


@transaction.atomic
def agency_get_or_create_for_email(
    *, email: str, actor: Actor | None = None
) -> tuple[Agency, bool]:
    """The agency that owns ``email``'s domain, created (named after the domain, with an
    ``AgencyDomain`` row) when no agency owns it yet. Returns ``(agency, created)``.

    Safe against a concurrent caller creating the same domain: the unique index on
    ``AgencyDomain.domain`` decides, and the loser reads the winner's agency.
    """
    domain = domain_of(normalise_address(email))
    existing = AgencyDomain.objects.select_related("agency").filter(domain=domain).first()
    if existing is not None:
        return existing.agency, False
    try:
        with transaction.atomic():
            agency = Agency.objects.create(name=domain)
            AgencyDomain.objects.create(agency=agency, domain=domain)
    except IntegrityError:
        return AgencyDomain.objects.select_related("agency").get(domain=domain).agency, False
    audit_record(
        actor=actor or Actor.system(),
        action="agency.created",
        agency=agency,
        target=agency,
        details={"domain": domain},
    )
    return agency, True


@transaction.atomic
def user_get_or_create(
    *, email: str, agency: Agency, actor: Actor | None = None
) -> tuple[User, bool]:
    """The user with ``email``, created in ``agency`` when missing. Returns ``(user, created)``.

    The first user of an agency becomes its admin, later ones members. An existing user keeps
    their agency and role; one with no agency yet (e.g. a staff account) joins ``agency``.
    """
    email = normalise_address(email)
    user = User.objects.filter(email__iexact=email).order_by("pk").first()
    if user is not None and user.agency_id is not None:
        return user, False

    # Lock the agency row so that two concurrent first users cannot both become admin.
    Agency.objects.select_for_update().filter(pk=agency.pk).first()
    role = User.Role.MEMBER if agency.users.exists() else User.Role.ADMIN
    if user is not None:
        user.agency = agency
        user.role = role
        user.save(update_fields=["agency", "role"])
        _audit_member(user, action="member.joined", actor=actor)
        return user, False
    try:
        with transaction.atomic():
            user = User.objects.create_user(email, agency=agency, role=role)
    except IntegrityError:
        return User.objects.get(email=email), False
    _audit_member(user, action="member.created", actor=actor)
    return user, True


def _audit_member(user: User, *, action: str, actor: Actor | None) -> None:
    audit_record(
        actor=actor or Actor.system(),
        action=action,
        agency=user.agency,
        target=user,
        details={"role": user.role},
    )


@transaction.atomic
def agency_set_rate_limit(*, agency: Agency, per_second: int, actor: Actor | None = None) -> Agency:
    """Set the agency's sends per second through the API (0 = unlimited)."""
    if per_second < 0:
        raise ValueError("the rate limit must be 0 (unlimited) or a positive number of sends/s")
    previous = agency.rate_limit_per_second
    if previous == per_second:
        return agency
    agency.rate_limit_per_second = per_second
    agency.save(update_fields=["rate_limit_per_second"])
    audit_record(
        actor=actor or Actor.system(),
        action="agency.rate_limit_changed",
        agency=agency,
        target=agency,
        details={"from": previous, "to": per_second},
    )
    return agency
