"""Delivery of emails to the SMTP relay: enqueueing, claiming, hand-off and recording the outcome.

The email row is the queue record (see docs/delivery.md). A task carries only the email id; the
worker claims the row with a conditional UPDATE that sets a lease (``claimed_until``), so a
duplicate task or a second worker does nothing. While an email waits for a retry, the same column
holds the time of the next attempt, and the periodic sweeper re-enqueues it then.

Every outcome is an event (``emails.services.events.event_record``): ACCEPTED per recipient the
relay took, BOUNCED per refused recipient, DEFERRED per recipient of a failed attempt that will
be retried. The event service moves the statuses; this module only adds what is particular to the
hand-off: the lease, the last relay reply, retries and the blacklist.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import BadHeaderError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from accounts.audit import Actor
from apikeys.models import ApiKey
from emails.delivery import smtp
from emails.delivery.mime import build_message, make_message_id
from emails.delivery.shutdown import sigterm_deferred
from emails.dkim import dkim_sign_built
from emails.models import BlacklistEntry, Email, EmailEvent, EmailRecipient, Status
from emails.queue import enqueue
from emails.services.blacklist import blacklist_add
from emails.services.events import HARD_BOUNCE, SOFT_BOUNCE, event_record
from emails.services.simulator import email_simulate

logger = logging.getLogger(__name__)

__all__ = ["HARD_BOUNCE", "SOFT_BOUNCE"]

DELIVER_TASK = "emails.tasks.deliver_email"
RETRY_WINDOW_OVER = "Not delivered within the retry window"
# Exponential backoff between attempts: 1, 2, 4 ... minutes (DELIVERY_RETRY_BASE_SECONDS),
# never more than an hour apart.
RETRY_MAX_DELAY_SECONDS = 60 * 60
# A task is enqueued on commit; an email still unclaimed this long after it was recorded lost its
# task (a broker outage between commit and enqueue) or the workers are behind.
UNCLAIMED_GRACE_SECONDS = 60
SWEEP_BATCH = 1000
# Amazon SES's SMTP interface answers DATA with "250 Ok <SES message id>"; that id is what its
# event notifications carry as ``mail.messageId``.
_SES_REPLY = re.compile(r"^250 Ok (?P<id>[0-9a-f]{16}(?:-[0-9a-f]{4,12}){5}-[0-9]{6})$")

EventType = EmailEvent.Type


def _pending() -> Q:
    # Matches the partial index ``email_pending``.
    return Q(status=Status.UNSENT, error_code__isnull=True)


def email_enqueue(*, email: Email) -> None:
    """Queue the hand-off of ``email`` once the current transaction commits.

    Only the id is queued: the worker reads the row, so it never acts on a stale copy, and an
    aborted request transaction never leaves a task behind for a row that does not exist. A task
    lost between the commit and the broker is picked up by the sweeper (``emails_requeue_stale``).
    """
    email_id = email.id
    transaction.on_commit(lambda: enqueue(DELIVER_TASK, email_id))


def email_claim(*, email_id: int, now: datetime) -> Email | None:
    """Take the lease on a pending email, or return None if someone else has it or it is done.

    The conditional UPDATE is the lock: of any number of concurrent tasks for the same email,
    exactly one changes the row. A lease is longer than the task timeout (``Q_CLUSTER``), so it
    can only expire for a worker that is gone.
    """
    claimed = (
        Email.objects.filter(_pending(), id=email_id)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(
            claimed_until=now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS),
            attempts=F("attempts") + 1,
            message_id=Case(
                When(message_id="", then=Value(make_message_id(email_id))),
                default=F("message_id"),
            ),
        )
    )
    if claimed != 1:
        return None
    return Email.objects.get(id=email_id)


def email_release(*, email: Email) -> None:
    """Give a claimed email back untried (the worker is stopping): another worker takes it now.

    The attempt did not happen, so it does not count; the lease is cleared only if it is still
    ours, and a new task is queued at once rather than waiting for the sweeper.
    """
    released = Email.objects.filter(
        _pending(), id=email.id, claimed_until=email.claimed_until
    ).update(claimed_until=None, attempts=F("attempts") - 1)
    if released:
        logger.info("Email %s: released untried, the worker is stopping", email.id)
        email_enqueue(email=email)


def _finish(*, email: Email, reply: str) -> None:
    """Keep the relay's last reply and end the lease, unless the email still waits for a retry.

    The lease is kept on an email that is still pending: clearing it would let the sweeper send
    it again at once.
    """
    Email.objects.filter(id=email.id).update(
        last_smtp_response=reply,
        claimed_until=Case(When(_pending(), then=F("claimed_until")), default=None),
    )


def _remember_provider_message_id(*, email: Email, reply: str) -> None:
    match = _SES_REPLY.match(reply)
    if match is None:
        return
    try:
        with transaction.atomic():
            Email.objects.filter(id=email.id, provider_message_id__isnull=True).update(
                provider_message_id=match["id"]
            )
    except IntegrityError:
        # Another email already has it: never let bookkeeping fail a hand-off that happened.
        logger.warning("Email %s: provider message id %s is taken", email.id, match["id"])


def blacklist_add_hard_bounce(*, address: str, reply: str) -> None:
    blacklist_add(
        address=address,
        reason=f"Hard bounce: {reply}",
        source=BlacklistEntry.Source.HARD_BOUNCE,
        actor=Actor.system(),
    )


def retry_delay(*, attempt: int) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1-based): exponential, with jitter.

    "Equal jitter": half the exponential delay plus a random part of the other half, so that
    emails that failed together (a relay outage) do not all come back in the same minute.
    """
    base = settings.DELIVERY_RETRY_BASE_SECONDS
    delay = min(base * 2 ** max(attempt - 1, 0), RETRY_MAX_DELAY_SECONDS)
    return timedelta(seconds=delay / 2 + random.uniform(0, delay / 2))


def _retry_deadline(email: Email) -> datetime:
    return email.created_at + timedelta(seconds=settings.DELIVERY_RETRY_SECONDS)


@transaction.atomic
def email_bounce(
    *,
    email: Email,
    recipients: list[EmailRecipient],
    error_code: str,
    reason: str,
    at: datetime,
) -> None:
    """Bounce the given (still pending) recipients, and so the email, with one reason."""
    targets: list[EmailRecipient | None] = list(recipients)
    if not any(recipient.kind == EmailRecipient.Kind.TO for recipient in recipients):
        # The email follows its primary recipient; without it here, bounce the email itself.
        targets.append(None)
    for recipient in targets:
        event_record(
            email=email,
            recipient=recipient,
            type=EventType.BOUNCED,
            occurred_at=at,
            detail=reason,
            error_code=error_code,
            error_sub_type=reason,
        )
    _finish(email=email, reply=reason)


@transaction.atomic
def email_defer(
    *, email: Email, recipients: list[EmailRecipient], reason: str, now: datetime
) -> None:
    """A transient failure: retry later, or give up with a soft bounce once the window is over.

    Until then the email stays UNSENT with no error_code (the API contract for "queued") and
    carries the failure in ``last_smtp_response`` and a DEFERRED event per recipient. The next
    attempt time is stored as the lease, so no task can claim the email before it, and the
    sweeper re-enqueues it after.
    """
    deadline = _retry_deadline(email)
    if now >= deadline:
        email_bounce(
            email=email, recipients=recipients, error_code=SOFT_BOUNCE, reason=reason, at=now
        )
        return
    retry_at = min(now + retry_delay(attempt=email.attempts), deadline)
    for recipient in recipients:
        event_record(
            email=email,
            recipient=recipient,
            type=EventType.DEFERRED,
            occurred_at=now,
            detail=f"{reason} (retry at {retry_at.isoformat()})",
        )
    Email.objects.filter(_pending(), id=email.id).update(
        claimed_until=retry_at, last_smtp_response=reason
    )
    logger.info("Email %s: hand-off failed (%s), retrying at %s", email.id, reason, retry_at)


@transaction.atomic
def email_record_handoff(
    *, email: Email, recipients: list[EmailRecipient], handoff: smtp.Handoff, now: datetime
) -> None:
    """Record the relay's per-recipient answer.

    The email follows its primary recipient. A refused cc/bcc gets its own error: 5xx is a hard
    bounce (and joins the blacklist, like a refused primary); a 4xx is retried with the primary
    if the primary is retried too, and is a soft bounce otherwise, since a cc is never sent on
    its own.
    """
    by_address = {recipient.address: recipient for recipient in recipients}
    primary = next(r for r in recipients if r.kind == EmailRecipient.Kind.TO)
    reply = str(handoff.reply) if handoff.reply else ""
    for address in handoff.accepted:
        event_record(
            email=email,
            recipient=by_address[address],
            type=EventType.ACCEPTED,
            occurred_at=now,
            detail=reply,
        )
    transient: dict[str, smtp.Reply] = {}
    for address, refusal in handoff.refused.items():
        if refusal.permanent:
            event_record(
                email=email,
                recipient=by_address[address],
                type=EventType.BOUNCED,
                occurred_at=now,
                detail=str(refusal),
                error_code=HARD_BOUNCE,
                error_sub_type=str(refusal),
            )
            blacklist_add_hard_bounce(address=address, reply=str(refusal))
        else:
            transient[address] = refusal

    if primary.address in transient:
        email_defer(
            email=email,
            recipients=[by_address[address] for address in transient],
            reason=str(transient[primary.address]),
            now=now,
        )
        return
    for address, refusal in transient.items():
        event_record(
            email=email,
            recipient=by_address[address],
            type=EventType.BOUNCED,
            occurred_at=now,
            detail=str(refusal),
            error_code=SOFT_BOUNCE,
            error_sub_type=str(refusal),
        )
    if primary.address in handoff.accepted:
        _remember_provider_message_id(email=email, reply=reply)
        _finish(email=email, reply=reply)
    else:
        _finish(email=email, reply=str(handoff.refused[primary.address]))


def email_deliver(*, email_id: int) -> None:
    """Hand one email to the relay: the body of the ``deliver_email`` task.

    A SIGTERM that arrives meanwhile waits until the email is handed off and recorded, or, if it
    comes before the relay took anything, until the claim is released (``shutdown.py``).
    """
    with sigterm_deferred() as stopping:
        now = timezone.now()
        email = email_claim(email_id=email_id, now=now)
        if email is None:
            logger.debug("Email %s: not pending or claimed elsewhere, nothing to do", email_id)
            return
        recipients = list(
            email.recipients.filter(status=Status.UNSENT, error_code__isnull=True).order_by("id")
        )
        if email.mode == ApiKey.Mode.TEST:
            email_simulate(email=email, recipients=recipients, now=now)
            return
        _deliver_claimed(email=email, recipients=recipients, now=now, stopping=stopping)


def _deliver_claimed(
    *,
    email: Email,
    recipients: list[EmailRecipient],
    now: datetime,
    stopping: Callable[[], bool],
) -> None:
    lease = timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    if email.attempts > 1 and now > _retry_deadline(email) + lease:
        # The last scheduled attempt would have been claimed long ago: the earlier attempts
        # died with their worker (a crash loop). Stop here rather than retry forever.
        reason = email.last_smtp_response or RETRY_WINDOW_OVER
        email_bounce(
            email=email, recipients=recipients, error_code=SOFT_BOUNCE, reason=reason, at=now
        )
        return
    if not any(recipient.kind == EmailRecipient.Kind.TO for recipient in recipients):
        # Cannot happen for a row the send API recorded; never loop on one that breaks the rule.
        logger.error("Email %s: primary recipient is not pending", email.id)
        reason = "No deliverable primary recipient"
        email_bounce(
            email=email, recipients=recipients, error_code=HARD_BOUNCE, reason=reason, at=now
        )
        return

    try:
        built = build_message(email=email, recipients=[r.address for r in recipients])
        # Signed last, so nothing changes a signed header or the body afterwards.
        built = dkim_sign_built(email=email, built=built)
        if stopping():
            raise smtp.Aborted("stopped before connecting")
        handoff = smtp.send(
            mail_from=built.mail_from,
            recipients=built.recipients,
            message=built.message,
            abort=stopping,
        )
    except smtp.Aborted:
        email_release(email=email)
    except smtp.PermanentError as exc:
        # The relay refused the message itself (sender or content), not an address: no blacklist.
        email_bounce(
            email=email, recipients=recipients, error_code=HARD_BOUNCE, reason=str(exc), at=now
        )
    except smtp.TransientError as exc:
        email_defer(email=email, recipients=recipients, reason=str(exc), now=now)
    except BadHeaderError as exc:
        # A header with a line break: the send API should never let one through, and no retry
        # can make it safe to send.
        reason = f"Invalid message header: {exc}"
        email_bounce(
            email=email, recipients=recipients, error_code=HARD_BOUNCE, reason=reason, at=now
        )
    except Exception as exc:
        # Building failed (an attachment missing from storage, a storage outage, a bug). Retried
        # like a relay failure, so the email still ends in a final state and is never stuck.
        logger.exception("Email %s: could not build the message", email.id)
        email_defer(email=email, recipients=recipients, reason=f"Build failed: {exc}", now=now)
    else:
        email_record_handoff(email=email, recipients=recipients, handoff=handoff, now=now)
        logger.info(
            "Email %s: handed off to %d recipient(s): %s",
            email.id,
            len(handoff.accepted),
            handoff.reply or "none accepted",
        )


def emails_requeue_stale(*, now: datetime | None = None) -> int:
    """Re-enqueue pending emails whose lease (or retry time) has passed, or that nobody claimed.

    Covers a crashed worker, a task lost before reaching the broker and every scheduled retry. A
    re-enqueued email whose first task is merely slow gets a second task, which does nothing: the
    claim lets only one through. Returns the number of tasks enqueued.
    """
    now = now or timezone.now()
    unclaimed_before = now - timedelta(seconds=UNCLAIMED_GRACE_SECONDS)
    stale = (
        Email.objects.filter(_pending())
        .filter(
            Q(claimed_until__lt=now)
            | Q(claimed_until__isnull=True, created_at__lt=unclaimed_before)
        )
        .order_by("created_at")
        .values_list("id", flat=True)[:SWEEP_BATCH]
    )
    ids = list(stale)
    for email_id in ids:
        enqueue(DELIVER_TASK, email_id)
    if ids:
        logger.info("Re-enqueued %d pending email(s)", len(ids))
    return len(ids)
