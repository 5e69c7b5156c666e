"""Agencies and users: creation paths that do not go through the portal's sign-up."""

from __future__ import annotations

from django.core.exceptions import ValidationError
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
def user_get_or_create_for_email(*, email: str) -> tuple[User, bool, bool]:
    """The user with ``email``; when missing, created in the agency of the address's domain (itself
    created when missing). An existing user keeps the agency they are in, which need not own
    their domain (e.g. invited into another agency); no agency is created for them then.
    Returns ``(user, user_created, agency_created)``."""
    existing = User.objects.filter(email__iexact=email).select_related("agency").first()
    if existing is not None and existing.agency is not None:
        return existing, False, False
    agency, agency_created = agency_get_or_create_for_email(email=email)
    user, user_created = user_get_or_create(email=email, agency=agency)
    return user, user_created, agency_created


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

    # Two concurrent first users cannot both become admin.
    _lock_agency(agency)
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


# ---------------------------------------------------------------------------------------------
# Members (portal). Admins invite, change roles and remove; an agency always keeps an admin.


class MemberError(ValueError):
    """A refused member change; the message is shown to the admin as it is."""


LAST_ADMIN = "An agency needs at least one admin: make someone else admin first."
ALREADY_MEMBER = "{email} is already a member of your agency."
OTHER_AGENCY = (
    "{email} already has a Postman Email account in another agency. Service staff can move it."
)
NOT_A_SIGNUP_ADDRESS = "Only {domains} addresses can log in to the portal."


def _lock_agency(agency: Agency) -> None:
    # Joins, role changes and removals of one agency are serialised on its row, so two admins
    # demoting each other at the same moment cannot leave the agency without an admin.
    Agency.objects.select_for_update().filter(pk=agency.pk).first()


def _other_admins(user: User) -> bool:
    return (
        User.objects.filter(agency_id=user.agency_id, role=User.Role.ADMIN, is_active=True)
        .exclude(pk=user.pk)
        .exists()
    )


@transaction.atomic
def member_invite(*, agency: Agency, email: str, role: str, actor: Actor) -> User:
    """Add ``email`` to ``agency`` with ``role`` and tell them by email. Raises MemberError.

    The address must be able to log in (SIGNUP_DOMAINS) but need not be on the agency's own
    domains: agencies work with people from other agencies and their shared-services vendors.
    A removed member of the same agency is re-activated.
    """
    from accounts.login import is_signup_address, signup_domains_text

    try:
        email = normalise_address(email)
    except ValidationError:
        raise MemberError("Enter a valid email address.")
    if not is_signup_address(email):
        raise MemberError(NOT_A_SIGNUP_ADDRESS.format(domains=signup_domains_text()))
    if role not in User.Role.values:
        raise MemberError("Choose a role.")
    _lock_agency(agency)
    user = User.objects.select_for_update().filter(email__iexact=email).first()
    if user is not None and user.agency_id not in (None, agency.pk):
        raise MemberError(OTHER_AGENCY.format(email=email))
    if user is not None and user.agency_id == agency.pk and user.is_active:
        raise MemberError(ALREADY_MEMBER.format(email=email))
    if user is None:
        user = User.objects.create_user(email, agency=agency, role=role)
    else:
        user.agency, user.role, user.is_active = agency, role, True
        user.save(update_fields=["agency", "role", "is_active"])
    audit_record(
        actor=actor, action="member.invited", agency=agency, target=user, details={"role": role}
    )
    _send_invitation(user=user, invited_by=actor.user)
    return user


def _send_invitation(*, user: User, invited_by: User | None) -> None:
    from django.conf import settings
    from django.template.loader import render_to_string

    from emails.services.system import email_send_system

    context = {
        "user": user,
        "agency": user.agency,
        "invited_by": invited_by,
        "login_url": f"{settings.PUBLIC_BASE_URL}/login",
    }
    email_send_system(
        agency=user.agency,
        to=[user.email],
        subject=render_to_string("accounts/invitation_subject.txt", context).strip(),
        html=render_to_string("accounts/invitation_email.html", context),
        tag="Portal invitation",
    )


@transaction.atomic
def member_set_role(*, member: User, role: str, actor: Actor) -> User:
    """Change ``member``'s role; the last admin cannot be demoted. Raises MemberError."""
    if role not in User.Role.values:
        raise MemberError("Choose a role.")
    _lock_agency(member.agency)
    member.refresh_from_db(fields=["role", "is_active"])
    if member.role == role:
        return member
    if member.role == User.Role.ADMIN and not _other_admins(member):
        raise MemberError(LAST_ADMIN)
    previous = member.role
    member.role = role
    member.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="member.role_changed",
        agency=member.agency,
        target=member,
        details={"from": previous, "to": role},
    )
    return member


@transaction.atomic
def member_remove(*, member: User, actor: Actor) -> int:
    """Take ``member`` out of the portal: deactivated (logged out everywhere at once) and their
    keys revoked. Returns the number of keys revoked. The row stays so the audit trail and
    the keys' history keep their owner; inviting the address again re-activates it.
    Raises MemberError for the last admin."""
    from apikeys.models import ApiKey
    from apikeys.services import apikey_revoke

    _lock_agency(member.agency)
    member.refresh_from_db(fields=["role", "is_active"])
    if member.role == User.Role.ADMIN and not _other_admins(member):
        raise MemberError(LAST_ADMIN)
    revoked = 0
    for key in ApiKey.objects.filter(owner=member, revoked_at__isnull=True).select_related(
        "agency"
    ):
        apikey_revoke(key=key, actor=actor)
        revoked += 1
    member.is_active = False
    member.save(update_fields=["is_active"])
    audit_record(
        actor=actor,
        action="member.removed",
        agency=member.agency,
        target=member,
        details={"role": member.role, "keys_revoked": revoked},
    )
    return revoked


@transaction.atomic
def agency_set_active(*, agency: Agency, is_active: bool, actor: Actor | None = None) -> bool:
    """Suspend (``is_active=False``) or reactivate an agency. A suspended agency's API keys get
    403 "Agency is suspended" on every call from the next request on (apikeys.authentication).
    Returns whether anything changed."""
    updated = (
        Agency.objects.filter(pk=agency.pk).exclude(is_active=is_active).update(is_active=is_active)
    )
    agency.is_active = is_active
    if updated:
        audit_record(
            actor=actor or Actor.system(),
            action="agency.reactivated" if is_active else "agency.suspended",
            agency=agency,
            target=agency,
        )
    return bool(updated)
