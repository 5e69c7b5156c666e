"""Sender domains: an agency proves it controls a domain through DNS, then sends from any
address on it, DKIM-signed (SPEC §7, docs/senders.md).

Life of a domain::

    PENDING ──(ownership + DKIM pass)──> VERIFIED ──(a check fails)──> FAILING
                                            ^                            │ 72 h still failing
                                            └──(checks pass again)───────┴──> SUSPENDED

Staff can approve (→ VERIFIED) or suspend (→ SUSPENDED) any domain. A staff suspension is told
apart from one after the grace period by ``failing_since``: kept for the latter, cleared by
staff, so only the former waits for staff while the latter recovers when DNS is fixed.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import Agency, User
from emails import dkim
from emails.addresses import default_from_mailbox, is_valid_address
from emails.dns import DnsUnavailable, make_resolver, txt_records
from emails.models import SenderDomain
from emails.queue import enqueue
from emails.sender_selectors import domain_sending_for_another_agency
from emails.services.system import email_send_system

logger = logging.getLogger(__name__)

Status = SenderDomain.Status
Check = SenderDomain.Check

# The ownership record lives on its own name rather than the apex: the apex TXT set is often
# long and shared (SPF, other services' tokens), and a dedicated name is easy to find and remove.
OWNERSHIP_LABEL = "_postman"
OWNERSHIP_PREFIX = "postman-verification="
GRACE_PERIOD = timedelta(hours=72)
CHECK_TASK = "emails.sender_tasks.check_sender_domain"
CHECK_FIELDS = ("ownership_check", "dkim_check", "spf_check", "dmarc_check")
_WHITESPACE = re.compile(r"\s+")


class SenderDomainError(Exception):
    """A request about a domain that cannot be done; ``str(error)`` is shown to the user."""


@dataclass(frozen=True)
class DnsRecord:
    """One record the agency publishes, as the portal shows it."""

    purpose: str
    type: str
    name: str
    value: str
    status: str
    required: bool

    @property
    def status_label(self) -> str:
        return Check(self.status).label


@dataclass(frozen=True)
class CheckResult:
    domain: SenderDomain
    # The records whose look-up failed (timeout, SERVFAIL): their status was left as it was.
    unavailable: list[str]


def normalise_domain(value: str) -> str:
    """``value`` as stored: lowercased ASCII (IDNA for international names), no trailing dot.

    A domain is valid exactly when the send API would accept addresses on it."""
    name = (value or "").strip().rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise SenderDomainError(f"{value!r} is not a valid domain name.") from None
    if len(name) > 253 or not is_valid_address(f"postmaster@{name}"):
        raise SenderDomainError(f"{value!r} is not a valid domain name.")
    return name


def dkim_selector_for(now: datetime) -> str:
    # Dated, so a key rotated later gets a new name and both can be published during the switch.
    return f"pm{now:%Y%m}"


def ownership_name(domain: SenderDomain) -> str:
    return f"{OWNERSHIP_LABEL}.{domain.domain}"


def ownership_value(domain: SenderDomain) -> str:
    return f"{OWNERSHIP_PREFIX}{domain.ownership_token}"


def dkim_name(domain: SenderDomain) -> str:
    return f"{domain.dkim_selector}._domainkey.{domain.domain}"


def spf_value() -> str:
    return f"v=spf1 include:{settings.SPF_INCLUDE} ~all"


def dmarc_name(domain: SenderDomain) -> str:
    return f"_dmarc.{domain.domain}"


def dmarc_value(domain: SenderDomain) -> str:
    return f"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain.domain}"


def sender_domain_records(domain: SenderDomain) -> list[DnsRecord]:
    """Every record to publish for ``domain``, with its last checked status."""
    return [
        DnsRecord(
            "Ownership",
            "TXT",
            ownership_name(domain),
            ownership_value(domain),
            domain.ownership_check,
            True,
        ),
        DnsRecord(
            "DKIM",
            "TXT",
            dkim_name(domain),
            dkim.dkim_record_value(domain.dkim_public_key),
            domain.dkim_check,
            True,
        ),
        DnsRecord("SPF", "TXT", domain.domain, spf_value(), domain.spf_check, False),
        DnsRecord(
            "DMARC", "TXT", dmarc_name(domain), dmarc_value(domain), domain.dmarc_check, False
        ),
    ]


def _audit(*, actor: Actor, action: str, domain: SenderDomain, details: dict | None = None) -> None:
    # Never the key: the details name what changed, the target is the domain's name.
    audit_record(actor=actor, action=action, agency=domain.agency, target=domain, details=details)


def sender_domain_add(*, agency: Agency, domain: str, actor: Actor) -> SenderDomain:
    """Add ``domain`` for ``agency`` with a new ownership token and DKIM key pair (PENDING).

    A domain verified by another agency cannot be added; one that another agency merely added
    (pending) can: whoever publishes the records first gets it, and the partial unique
    constraint ``sender_domain_one_owner`` keeps it at one verified owner.
    """
    name = normalise_domain(domain)
    if name == default_from_mailbox().address.rpartition("@")[2]:
        raise SenderDomainError("This is the service's own sending domain.")
    if SenderDomain.objects.filter(agency=agency, domain=name).exists():
        raise SenderDomainError(f"{name} has already been added.")
    if domain_sending_for_another_agency(domain=name, agency_id=agency.pk):
        raise SenderDomainError(f"{name} is already verified by another agency.")

    now = timezone.now()
    private_pem, public_key = dkim.generate_key_pair()
    try:
        with transaction.atomic():
            row = SenderDomain.objects.create(
                agency=agency,
                domain=name,
                ownership_token=secrets.token_hex(16),
                dkim_selector=dkim_selector_for(now),
                dkim_private_key=dkim.encrypt_private_key(private_pem),
                dkim_public_key=public_key,
                created_at=now,
                created_by=actor.user,
            )
            _audit(
                actor=actor,
                action="sender_domain.added",
                domain=row,
                details={"selector": row.dkim_selector},
            )
    except IntegrityError:
        # The same agency added it a moment ago (a double submit).
        raise SenderDomainError(f"{name} has already been added.") from None
    return row


# -- Checks -------------------------------------------------------------------------------------


def _check_ownership(domain: SenderDomain, values: list[str]) -> str:
    if not values:
        return Check.MISSING
    expected = ownership_value(domain)
    return Check.VERIFIED if any(value.strip() == expected for value in values) else Check.WRONG


def _tags(value: str) -> dict[str, str]:
    """``k=v; k=v`` tag lists (DKIM, DMARC); whitespace inside a value is folding, dropped."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, tag_value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), _WHITESPACE.sub("", tag_value))
    return tags


def _check_dkim(domain: SenderDomain, values: list[str]) -> str:
    if not values:
        return Check.MISSING
    for value in values:
        tags = _tags(value)
        if (
            tags.get("v", "DKIM1") == "DKIM1"
            and tags.get("k", "rsa").lower() == "rsa"
            and tags.get("p") == domain.dkim_public_key
        ):
            return Check.VERIFIED
    return Check.WRONG


def _check_spf(values: list[str]) -> str:
    records = [v for v in values if v.lower() == "v=spf1" or v.lower().startswith("v=spf1 ")]
    if not records:
        return Check.MISSING
    if len(records) > 1:
        return Check.WRONG  # RFC 7208 §4.5: two SPF records are a permanent error
    wanted = f"include:{settings.SPF_INCLUDE.lower()}"
    terms = {term.lstrip("+") for term in records[0].lower().split()}
    return Check.VERIFIED if wanted in terms else Check.WRONG


def _check_dmarc(values: list[str]) -> str:
    records = [v for v in values if _tags(v).get("v") == "DMARC1"]
    if not records:
        return Check.MISSING
    if len(records) > 1:
        return Check.WRONG  # RFC 7489 §6.6.3: more than one record means no policy
    # Any valid policy counts; the recommended one is only a recommendation.
    policy = _tags(records[0]).get("p", "").lower()
    return Check.VERIFIED if policy in ("none", "quarantine", "reject") else Check.WRONG


def _look_up(domain: SenderDomain) -> tuple[dict[str, str], list[str]]:
    """The new value of each check field that could be determined, and the records that could
    not be looked up."""
    checks = {
        "ownership_check": (ownership_name(domain), lambda v: _check_ownership(domain, v)),
        "dkim_check": (dkim_name(domain), lambda v: _check_dkim(domain, v)),
        "spf_check": (domain.domain, _check_spf),
        "dmarc_check": (dmarc_name(domain), _check_dmarc),
    }
    results: dict[str, str] = {}
    unavailable: list[str] = []
    try:
        resolver = make_resolver()
    except DnsUnavailable as exc:
        logger.warning("Sender domain %s: no DNS resolver (%s)", domain.domain, exc)
        return results, [name for name, _ in checks.values()]
    for field, (name, judge) in checks.items():
        try:
            results[field] = judge(txt_records(name, resolver=resolver))
        except DnsUnavailable as exc:
            logger.warning("Sender domain %s: %s left unchanged (%s)", domain.domain, name, exc)
            unavailable.append(name)
    return results, unavailable


def _apply_transition(row: SenderDomain, *, now: datetime) -> str | None:
    """Move ``row`` along the state machine after its checks were updated; the audit action of
    the move, or None when the status stays."""
    passes = row.ownership_check == Check.VERIFIED and row.dkim_check == Check.VERIFIED
    if passes:
        if row.status == Status.VERIFIED:
            return None
        if row.status == Status.SUSPENDED and row.failing_since is None:
            return None  # suspended by staff: only staff lift it
        if row.status != Status.FAILING and domain_sending_for_another_agency(
            domain=row.domain, agency_id=row.agency_id
        ):
            return None
        first_time = row.status == Status.PENDING
        row.status = Status.VERIFIED
        row.verified_at = row.verified_at or now
        row.failing_since = None
        return "sender_domain.verified" if first_time else "sender_domain.recovered"
    if row.status == Status.VERIFIED:
        row.status = Status.FAILING
        row.failing_since = now
        return "sender_domain.failing"
    if row.status == Status.FAILING and now - row.failing_since >= GRACE_PERIOD:
        row.status = Status.SUSPENDED
        return "sender_domain.suspended"
    return None


def _notify_admins(*, domain: SenderDomain, template: str) -> None:
    """Email the agency's admins about ``domain`` (templates/emails/<template>{.html,_subject})."""
    admins = list(
        User.objects.filter(
            agency_id=domain.agency_id, role=User.Role.ADMIN, is_active=True
        ).values_list("email", flat=True)
    )
    if not admins:
        logger.warning("Sender domain %s: no agency admin to notify", domain.domain)
        return
    context = {
        "domain": domain,
        "records": sender_domain_records(domain),
        "deadline": domain.failing_since + GRACE_PERIOD if domain.failing_since else None,
        "url": f"{settings.PUBLIC_BASE_URL}/senders/domains/{domain.pk}/",
    }
    email_send_system(
        agency=domain.agency,
        to=sorted(admins),
        subject=render_to_string(f"emails/{template}_subject.txt", context).strip(),
        html=render_to_string(f"emails/{template}.html", context),
        tag="Sender domain",
    )


_NOTIFICATIONS = {
    "sender_domain.failing": "senders_mail_domain_failing",
    "sender_domain.suspended": "senders_mail_domain_suspended",
}


def sender_domain_check(
    *, domain: SenderDomain, now: datetime | None = None, actor: Actor | None = None
) -> CheckResult:
    """Look up the domain's records and move it along its life (see the module docstring).

    DNS is queried outside the transaction (it can take seconds); the row is then locked, so a
    concurrent check or staff action is applied on top of, not under, this one. A record that
    could not be looked up keeps its previous status; ``last_checked_at`` moves only when at
    least one answer came back. Changes are audited; a domain that starts failing or is
    suspended is announced to the agency's admins.
    """
    now = now or timezone.now()
    actor = actor or Actor.system()
    results, unavailable = _look_up(domain)

    with transaction.atomic():
        row = (
            SenderDomain.objects.select_for_update(of=("self",))
            .select_related("agency")
            .get(pk=domain.pk)
        )
        before = {field: getattr(row, field) for field in (*CHECK_FIELDS, "status")}
        for field, value in results.items():
            setattr(row, field, value)
        if results:
            row.last_checked_at = now
        state = (row.status, row.verified_at, row.failing_since)
        action = _apply_transition(row, now=now)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError:
            # Another agency's domain of the same name was verified in the meantime.
            row.status, row.verified_at, row.failing_since = state
            action = None
            row.save()
        changes = {
            field: {"from": before[field], "to": getattr(row, field)}
            for field in before
            if before[field] != getattr(row, field)
        }
        if changes:
            details = {"changes": changes, "unavailable": unavailable}
            _audit(
                actor=actor, action=action or "sender_domain.checked", domain=row, details=details
            )
        if action in _NOTIFICATIONS:
            _notify_admins(domain=row, template=_NOTIFICATIONS[action])
    return CheckResult(domain=row, unavailable=unavailable)


def sender_domain_check_by_id(*, domain_id: int) -> None:
    """The scheduled check of one domain (a django-q2 task); a removed domain is skipped."""
    domain = SenderDomain.objects.filter(pk=domain_id).first()
    if domain is not None:
        sender_domain_check(domain=domain)


def sender_domains_check_all() -> int:
    """Queue a check of every domain but the staff-suspended ones (the daily schedule).

    One task per domain, so that slow DNS for a few domains never runs into the task timeout,
    and the checks spread over every worker. Returns the number queued."""
    ids = list(
        SenderDomain.objects.exclude(status=Status.SUSPENDED, failing_since__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for domain_id in ids:
        enqueue(CHECK_TASK, domain_id)
    return len(ids)


# -- Staff and portal actions -------------------------------------------------------------------


def sender_domain_approve(*, domain: SenderDomain, actor: Actor) -> SenderDomain:
    """Staff: mark the domain verified now, whatever DNS says.

    The daily check still runs: a domain whose records are missing goes on to FAILING and, 72 h
    later, SUSPENDED (receivers cannot check a DKIM signature without the published key).
    Timeouts never demote it, so a closed network whose resolver cannot see public DNS keeps an
    approved domain verified."""
    with transaction.atomic():
        row = (
            SenderDomain.objects.select_for_update(of=("self",))
            .select_related("agency")
            .get(pk=domain.pk)
        )
        if row.status == Status.VERIFIED:
            return row
        if domain_sending_for_another_agency(domain=row.domain, agency_id=row.agency_id):
            raise SenderDomainError(f"{row.domain} is already verified by another agency.")
        previous = row.status
        row.status = Status.VERIFIED
        row.verified_at = row.verified_at or timezone.now()
        row.failing_since = None
        row.save(update_fields=["status", "verified_at", "failing_since"])
        _audit(
            actor=actor,
            action="sender_domain.approved",
            domain=row,
            details={"from": previous},
        )
    return row


def sender_domain_suspend(*, domain: SenderDomain, actor: Actor) -> SenderDomain:
    """Staff: stop sending from the domain until staff approve it again."""
    with transaction.atomic():
        row = (
            SenderDomain.objects.select_for_update(of=("self",))
            .select_related("agency")
            .get(pk=domain.pk)
        )
        if row.status == Status.SUSPENDED and row.failing_since is None:
            return row
        previous = row.status
        row.status = Status.SUSPENDED
        row.failing_since = None  # marks a staff suspension: checks do not lift it
        row.save(update_fields=["status", "failing_since"])
        _audit(
            actor=actor,
            action="sender_domain.suspended",
            domain=row,
            details={"from": previous, "by": "staff"},
        )
        _notify_admins(domain=row, template="senders_mail_domain_suspended")
    return row


def sender_domain_remove(*, domain: SenderDomain, actor: Actor) -> None:
    """Forget the domain and its key: mail from it is refused from now on."""
    with transaction.atomic():
        _audit(
            actor=actor,
            action="sender_domain.removed",
            domain=domain,
            details={"status": domain.status},
        )
        domain.delete()
