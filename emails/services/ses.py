"""Amazon SES events (through SNS) onto our status model, one event per recipient.

Both of SES's formats are read: "event publishing" (configuration-set event destinations, key
``eventType``: Send, Delivery, Bounce, Complaint, Open, Reject, DeliveryDelay, ...) and the older
identity "notifications" (key ``notificationType``: Bounce, Complaint, Delivery). Their bodies
share the ``mail``, ``bounce``, ``complaint`` and ``delivery`` objects.

- Send: every ``mail.destination`` → SENT.
- Delivery: each of ``delivery.recipients`` → DELIVERED.
- Bounce: each of ``bounce.bouncedRecipients`` → BOUNCED, ``error_sub_type`` = ``bounceSubType``;
  bounceType Permanent → ``Hard bounce`` and the global blacklist, Transient or Undetermined →
  ``Soft bounce``.
- Complaint: each of ``complaint.complainedRecipients`` → COMPLAINT, ``error_code`` =
  ``complaintFeedbackType`` (``abuse`` when SES has none); the address joins the agency's
  suppression list (not the global blacklist: one agency's recipient complained about it).
- Open: the primary recipient (SES cannot tell who opened a message sent to several) → OPENED.
- Reject: SES refused to send at all (e.g. a virus): every ``mail.destination`` → BOUNCED,
  ``Hard bounce``, sub-type ``Rejected``; no blacklist, the content was refused, not an address.
- DeliveryDelay: each of ``deliveryDelay.delayedRecipients`` → a ``delayed`` event, no status.

The email is found by our ``X-Postman-Email-Id`` header (``mail.headers``, present when the
configuration set includes original headers), else by our Message-ID in
``mail.commonHeaders.messageId`` (verified, it carries an HMAC), else by ``mail.messageId`` =
``Email.provider_message_id`` (stored from SES's SMTP reply, or from the first event that named
the email). Each event's id is the SNS MessageId plus the recipient, so a redelivered SNS
message changes nothing. Test-mode emails never reach SES, but if an event names one it still
never touches the blacklist or the suppression list.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor
from apikeys.models import ApiKey
from emails import sns
from emails.delivery.mime import EMAIL_ID_HEADER, make_message_id
from emails.models import BlacklistEntry, Email, EmailEvent, EmailRecipient, Suppression
from emails.services.blacklist import blacklist_add
from emails.services.events import (
    HARD_BOUNCE,
    SOFT_BOUNCE,
    event_record,
    provider_message_ids_set,
)
from emails.services.suppressions import suppression_add

logger = logging.getLogger(__name__)

EventType = EmailEvent.Type

PROCESSED = "processed"
DUPLICATE = "duplicate"
UNKNOWN_EMAIL = "unknown_email"
IGNORED = "ignored"
SUBSCRIPTION_CONFIRMED = "subscription_confirmed"
UNSUBSCRIBED = "unsubscribed"

REJECTED_SUB_TYPE = "Rejected"
DEFAULT_FEEDBACK_TYPE = "abuse"
_OUR_MESSAGE_ID = re.compile(r"^<(?P<id>[0-9]{1,18})\.[0-9a-f]{16}@[^<>@\s]+>$")


@dataclass(frozen=True)
class Observed:
    """One thing SES says happened to one recipient (``address`` None: the primary)."""

    address: str | None
    type: str
    occurred_at: datetime
    detail: str = ""
    error_code: str | None = None
    error_sub_type: str | None = None
    blacklist: bool = False
    suppress: bool = False


def _time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    return fallback


def _addresses(items: object, key: str = "emailAddress") -> list[str]:
    """Addresses from SES's recipient lists (plain strings or objects with ``key``)."""
    found = []
    for item in items if isinstance(items, list) else []:
        value = item.get(key) if isinstance(item, dict) else item
        if isinstance(value, str) and value:
            found.append(value)
    return found


def _send(data: dict, mail: dict, mail_time: datetime) -> list[Observed]:
    return [
        Observed(address, EventType.SENT, mail_time, detail="SES accepted the message")
        for address in _addresses(mail.get("destination"))
    ]


def _delivery(data: dict, mail: dict, mail_time: datetime) -> list[Observed]:
    delivery = data.get("delivery") or {}
    at = _time(delivery.get("timestamp"), mail_time)
    detail = str(delivery.get("smtpResponse") or "")
    return [
        Observed(address, EventType.DELIVERED, at, detail=detail)
        for address in _addresses(delivery.get("recipients"))
    ]


def _bounce(data: dict, mail: dict, mail_time: datetime) -> list[Observed]:
    bounce = data.get("bounce") or {}
    permanent = bounce.get("bounceType") == "Permanent"
    at = _time(bounce.get("timestamp"), mail_time)
    sub_type = str(bounce.get("bounceSubType") or "General")
    observed = []
    for item in bounce.get("bouncedRecipients") or []:
        if not isinstance(item, dict) or not isinstance(item.get("emailAddress"), str):
            continue
        detail = item.get("diagnosticCode") or item.get("status") or bounce.get("bounceType")
        observed.append(
            Observed(
                item["emailAddress"],
                EventType.BOUNCED,
                at,
                detail=str(detail or ""),
                error_code=HARD_BOUNCE if permanent else SOFT_BOUNCE,
                error_sub_type=sub_type,
                blacklist=permanent,
            )
        )
    return observed


def _complaint(data: dict, mail: dict, mail_time: datetime) -> list[Observed]:
    complaint = data.get("complaint") or {}
    at = _time(complaint.get("timestamp"), mail_time)
    feedback = str(complaint.get("complaintFeedbackType") or DEFAULT_FEEDBACK_TYPE)
    return [
        Observed(
            address,
            EventType.COMPLAINT,
            at,
            detail=str(complaint.get("userAgent") or ""),
            error_code=feedback,
            error_sub_type=complaint.get("complaintSubType"),
            suppress=True,
        )
        for address in _addresses(complaint.get("complainedRecipients"))
    ]


def _open(data: dict, mail: dict, mail_time: datetime) -> list[Observed]:
    opened = data.get("open") or {}
    # SES cannot tell which recipient opened the message either: the primary, as for our pixel.
    detail = str(opened.get("userAgent") or "")
    return [Observed(None, EventType.OPENED, _time(opened.get("timestamp"), mail_time), detail)]


def _reject(data: dict, mail: dict, mail_time: datetime) -> list[Observed]:
    reason = str((data.get("reject") or {}).get("reason") or "Rejected by Amazon SES")
    return [
        Observed(
            address,
            EventType.REJECTED,
            mail_time,
            detail=reason,
            error_code=HARD_BOUNCE,
            error_sub_type=REJECTED_SUB_TYPE,
        )
        for address in _addresses(mail.get("destination"))
    ]


def _delivery_delay(data: dict, mail: dict, mail_time: datetime) -> list[Observed]:
    delay = data.get("deliveryDelay") or {}
    at = _time(delay.get("timestamp"), mail_time)
    observed = []
    for item in delay.get("delayedRecipients") or []:
        if isinstance(item, dict) and isinstance(item.get("emailAddress"), str):
            detail = " ".join(
                str(part)
                for part in (delay.get("delayType"), item.get("status"), item.get("diagnosticCode"))
                if part
            )
            observed.append(Observed(item["emailAddress"], EventType.DELAYED, at, detail=detail))
    return observed


_HANDLERS = {
    "Send": _send,
    "Delivery": _delivery,
    "Bounce": _bounce,
    "Complaint": _complaint,
    "Open": _open,
    "Reject": _reject,
    "DeliveryDelay": _delivery_delay,
}


def _header(mail: dict, name: str) -> str | None:
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == name.lower():
            return str(header.get("value", ""))
    return None


def email_for_ses_mail(mail: dict) -> Email | None:
    """The email an SES ``mail`` object is about, or None."""
    header = (_header(mail, EMAIL_ID_HEADER) or "").strip()
    if header.isdigit() and len(header) <= 18:
        return Email.objects.filter(id=int(header)).first()
    common = mail.get("commonHeaders") or {}
    match = _OUR_MESSAGE_ID.match(str(common.get("messageId") or ""))
    if match and common["messageId"] == make_message_id(int(match["id"])):
        return Email.objects.filter(id=int(match["id"])).first()
    provider_id = mail.get("messageId")
    if isinstance(provider_id, str) and provider_id:
        return Email.objects.filter(provider_message_id=provider_id).first()
    return None


def _remember_provider_message_id(*, email: Email, provider_id: object) -> None:
    if isinstance(provider_id, str) and provider_id and not email.provider_message_id:
        provider_message_ids_set({email.id: provider_id})


def _side_effects(*, email: Email, recipient: EmailRecipient, observed: Observed) -> None:
    """Blacklist on a permanent bounce, suppress on a complaint: live emails only."""
    if email.mode != ApiKey.Mode.LIVE:
        return
    if observed.blacklist:
        blacklist_add(
            address=recipient.address,
            reason=f"Hard bounce ({observed.error_sub_type}): {observed.detail}",
            source=BlacklistEntry.Source.HARD_BOUNCE,
            actor=Actor.system(),
        )
    if observed.suppress:
        suppression_add(
            agency=email.agency,
            address=recipient.address,
            reason=f"Complaint ({observed.error_code}) about email {email.id}",
            source=Suppression.Source.COMPLAINT,
            actor=Actor.system(),
        )


def ses_event_process(*, sns_message_id: str, message: str) -> str:
    """Apply one SES event (the ``Message`` of a verified SNS notification).

    Returns PROCESSED, DUPLICATE (every event in it was recorded before), UNKNOWN_EMAIL or
    IGNORED (not an SES event we map, or not parseable: logged, since SNS retrying the same
    bytes cannot help).
    """
    try:
        data = json.loads(message)
        event_type = data.get("eventType") or data.get("notificationType")
        mail = data.get("mail")
    except (ValueError, AttributeError):
        logger.warning("SNS message %s is not an SES event: %.200r", sns_message_id, message)
        return IGNORED
    handler = _HANDLERS.get(event_type)
    if handler is None or not isinstance(mail, dict):
        # E.g. "AmazonSnsSubscriptionSucceeded", Click, Subscription, Rendering Failure.
        logger.info("SNS message %s: SES %r is not mapped, ignored", sns_message_id, event_type)
        return IGNORED
    email = email_for_ses_mail(mail)
    if email is None:
        logger.warning(
            "SNS message %s: SES %s for unknown message %r",
            sns_message_id,
            event_type,
            mail.get("messageId"),
        )
        return UNKNOWN_EMAIL
    observed = handler(data, mail, _time(mail.get("timestamp"), timezone.now()))
    with transaction.atomic():
        _remember_provider_message_id(email=email, provider_id=mail.get("messageId"))
        recorded = _record(email=email, observed=observed, sns_message_id=sns_message_id, data=data)
    return PROCESSED if recorded or not observed else DUPLICATE


def _record(*, email: Email, observed: list[Observed], sns_message_id: str, data: dict) -> int:
    recipients = {recipient.address: recipient for recipient in email.recipients.all()}
    primary = next((r for r in recipients.values() if r.is_primary), None)
    recorded = 0
    for item in observed:
        recipient = recipients.get(item.address.lower()) if item.address else primary
        if recipient is None:
            logger.warning(
                "Email %s: SES %s for %r, not a recipient", email.id, item.type, item.address
            )
            continue
        event = event_record(
            email=email,
            recipient=recipient,
            type=item.type,
            occurred_at=item.occurred_at,
            provider_event_id=f"{sns_message_id}:{recipient.address}",
            detail=item.detail,
            payload=data,
            error_code=item.error_code,
            error_sub_type=item.error_sub_type,
        )
        if event is not None:
            recorded += 1
            _side_effects(email=email, recipient=recipient, observed=item)
    return recorded


def sns_message_handle(*, message: sns.SnsMessage) -> str:
    """Act on a verified SNS message: confirm a subscription, note an unsubscription, or apply
    the SES event a notification carries. Returns what was done (the callback's answer).

    Raises ``sns.TopicNotAllowed`` for a topic outside SNS_TOPIC_ARNS, and ``sns.UntrustedUrl``
    or ``sns.FetchFailed`` when a SubscribeURL cannot be visited.
    """
    sns.check_topic(message)
    if message.type == sns.SUBSCRIPTION_CONFIRMATION:
        sns.sns_confirm_subscription(message)
        return SUBSCRIPTION_CONFIRMED
    if message.type == sns.UNSUBSCRIBE_CONFIRMATION:
        # Events stop arriving after this: worth an operator's attention.
        logger.warning("SNS unsubscribed this endpoint from %s", message.topic_arn)
        return UNSUBSCRIBED
    return ses_event_process(sns_message_id=message.message_id, message=message.message)
