"""From-addresses verified for an agency (SPEC §7): the staff shortcut (``sender_verify``) and
addresses an agency admin asks for, confirmed by a link emailed to them (docs/senders.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.signing import BadSignature, SignatureExpired, TimestampSigner
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.addresses import domain_of, normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import Agency, AgencyDomain, AuditEvent
from emails.addresses import default_from_addresses
from emails.models import VerifiedSender
from emails.sender_selectors import domain_sending_for_another_agency
from emails.services.system import email_send_system


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


# -- Single addresses verified by a confirmation link (SPEC §7) ----------------------------------

CONFIRMATION_SALT = "emails.sender-confirmation"
CONFIRMATION_MAX_AGE = timedelta(hours=48)
# One confirmation email per address a minute at most: the link goes to any mailbox, so the
# form must not be a way to flood one.
RESEND_AFTER = timedelta(seconds=60)
# Confirmation emails are sent on behalf of this internal agency, never the requesting one: an
# agency's members (and its API keys with the read scope) can read every email of their agency,
# so a link sent "as" the agency would let the agency confirm an address it does not own.
CONFIRMATION_AGENCY_NAME = "Postman Email (sender confirmations)"
CONFIRMATION_TAG = "Sender confirmation"

LINK_INVALID = "This confirmation link is not valid. Check that it was copied whole."
LINK_EXPIRED = "This confirmation link has expired. Ask for a new one in the Postman portal."
LINK_USED = "This address has already been confirmed."
LINK_SUPERSEDED = "A newer confirmation link was sent for this address: use the latest one."

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SenderAddressError(Exception):
    """A request about an address that cannot be done; ``str(error)`` is shown to the user."""


class ConfirmationError(SenderAddressError):
    """A confirmation link that does not confirm anything (one of the ``LINK_*`` messages)."""


def _stamp(moment: datetime) -> int:
    # Microseconds since the epoch: exact, unlike a float timestamp.
    return (moment - _EPOCH) // timedelta(microseconds=1)


def confirmation_token(sender: VerifiedSender) -> str:
    """Signed (SECRET_KEY, own salt), timestamped, and bound to the row and to the moment its
    link was sent: asking for a new link, or confirming, makes every earlier link useless."""
    payload = {"id": sender.pk, "sent": _stamp(sender.confirmation_sent_at)}
    return TimestampSigner(salt=CONFIRMATION_SALT).sign_object(payload)


def confirmation_url(sender: VerifiedSender) -> str:
    return f"{settings.PUBLIC_BASE_URL}/senders/confirm/{confirmation_token(sender)}"


def confirmation_agency() -> Agency:
    """The internal agency confirmation emails are sent under. It has no domain, so nobody can
    ever log in to it."""
    agency = (
        Agency.objects.filter(name=CONFIRMATION_AGENCY_NAME, domains__isnull=True)
        .order_by("pk")
        .first()
    )
    if agency is None:
        agency = Agency.objects.create(name=CONFIRMATION_AGENCY_NAME, rate_limit_per_second=0)
    return agency


def sender_address_add(*, agency: Agency, address: str, actor: Actor) -> VerifiedSender:
    """Ask to verify ``address`` for ``agency``: email it a confirmation link (48 h, single use).

    Asking again for an address still awaiting confirmation sends a new link and voids the old
    one. An address verified for another agency, or on a domain another agency verified, is
    refused. One awaiting confirmation for another agency is taken over: only the mailbox's
    owner can confirm, so letting a stale request block the real owner would help nobody.
    """
    try:
        address = normalise_address(address)
    except ValidationError:
        raise SenderAddressError("Enter a valid email address, like noreply@agency.gov.sg.")
    if address in default_from_addresses():
        raise SenderAddressError(f"{address} is the service's default sender.")
    if domain_sending_for_another_agency(domain=domain_of(address), agency_id=agency.pk):
        raise SenderAddressError(
            f"The domain of {address} is verified by another agency on this service."
        )

    now = timezone.now()
    try:
        with transaction.atomic():
            sender = VerifiedSender.objects.select_for_update().filter(address=address).first()
            released_from = _prepare_request(sender=sender, agency=agency, now=now)
            if sender is None:
                sender = VerifiedSender(address=address, created_at=now)
            sender.agency = agency
            sender.requested_by = actor.user
            sender.confirmation_sent_at = now
            sender.save()
            _send_confirmation(sender)
            details = {"released_from_agency": released_from.pk} if released_from else {}
            audit_record(
                actor=actor,
                action="sender.requested",
                agency=agency,
                target=sender,
                details=details,
            )
            if released_from is not None:
                audit_record(
                    actor=actor,
                    action="sender.released",
                    agency=released_from,
                    target=sender,
                    details={"to_agency": agency.pk},
                )
    except IntegrityError:
        # Another request for the same address created the row first.
        raise SenderAddressError(f"{address} was requested at the same moment: try again.")
    return sender


def _prepare_request(
    *, sender: VerifiedSender | None, agency: Agency, now: datetime
) -> Agency | None:
    """Refuse what cannot be asked for; the agency a pending request is taken from, if any."""
    if sender is None:
        return None
    if sender.verified_at is not None:
        if sender.agency_id == agency.pk:
            raise SenderAddressError(f"{sender.address} is already verified.")
        raise SenderAddressError(f"{sender.address} is verified by another agency.")
    if sender.confirmation_sent_at and now - sender.confirmation_sent_at < RESEND_AFTER:
        raise SenderAddressError(
            f"A confirmation was sent to {sender.address} moments ago. Wait a minute before "
            "asking again."
        )
    return sender.agency if sender.agency_id != agency.pk else None


def _send_confirmation(sender: VerifiedSender) -> None:
    context = {
        "address": sender.address,
        "agency": sender.agency,
        "url": confirmation_url(sender),
        "hours": int(CONFIRMATION_MAX_AGE.total_seconds() // 3600),
    }
    sent = email_send_system(
        agency=confirmation_agency(),
        to=[sender.address],
        subject=render_to_string("emails/senders_mail_confirm_subject.txt", context).strip(),
        html=render_to_string("emails/senders_mail_confirm.html", context),
        tag=CONFIRMATION_TAG,
    )
    if sent is None:
        raise SenderAddressError(
            f"{sender.address} is on the blacklist: no confirmation can be sent to it."
        )


def _confirmation_sender(token: str, *, lock: bool = False) -> VerifiedSender:
    try:
        payload = TimestampSigner(salt=CONFIRMATION_SALT).unsign_object(
            token, max_age=CONFIRMATION_MAX_AGE
        )
    except SignatureExpired:
        raise ConfirmationError(LINK_EXPIRED)
    except (BadSignature, ValueError):
        raise ConfirmationError(LINK_INVALID)
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
        raise ConfirmationError(LINK_INVALID)
    rows = VerifiedSender.objects.select_related("agency")
    if lock:
        rows = rows.select_for_update(of=("self",))
    sender = rows.filter(pk=payload["id"]).first()
    if sender is None:
        raise ConfirmationError(LINK_INVALID)  # removed since
    if sender.verified_at is not None:
        raise ConfirmationError(LINK_USED)
    if sender.confirmation_sent_at is None or _stamp(sender.confirmation_sent_at) != payload.get(
        "sent"
    ):
        raise ConfirmationError(LINK_SUPERSEDED)
    return sender


def sender_confirmation_get(*, token: str) -> VerifiedSender:
    """The address ``token`` would confirm, or ``ConfirmationError``; confirms nothing (the
    page that a GET shows, so that mail scanners prefetching the link verify nothing)."""
    return _confirmation_sender(token)


def sender_address_confirm(*, token: str, ip_address: str | None = None) -> VerifiedSender:
    """Verify the address of a valid, current, unused confirmation link."""
    with transaction.atomic():
        sender = _confirmation_sender(token, lock=True)
        sender.verified_at = timezone.now()
        sender.save(update_fields=["verified_at"])
        audit_record(
            actor=Actor(kind=AuditEvent.ActorKind.SYSTEM, ip_address=ip_address),
            action="sender.verified",
            agency=sender.agency,
            target=sender,
            details={"via": "confirmation link"},
        )
    return sender


def sender_address_approve(*, sender: VerifiedSender, actor: Actor) -> VerifiedSender:
    """Staff: verify the address without its confirmation."""
    with transaction.atomic():
        sender = VerifiedSender.objects.select_for_update().get(pk=sender.pk)
        if sender.verified_at is not None:
            return sender
        sender.verified_at = timezone.now()
        sender.save(update_fields=["verified_at"])
        audit_record(actor=actor, action="sender.approved", agency=sender.agency, target=sender)
    return sender


def sender_address_remove(*, sender: VerifiedSender, actor: Actor) -> None:
    """Forget the address: mail from it is refused, and its confirmation link stops working."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="sender.removed",
            agency=sender.agency,
            target=sender,
            details={"verified": sender.verified_at is not None},
        )
        sender.delete()
