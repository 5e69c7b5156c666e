"""Delivery of emails to the SMTP relay: enqueueing, claiming, hand-off and status transitions.

The email row is the queue record (see docs/delivery.md). A task carries only the email id; the
worker claims the row with a conditional UPDATE that sets a lease (``claimed_until``), so a
duplicate task or a second worker does nothing. While an email waits for a retry, the same column
holds the time of the next attempt, and the periodic sweeper re-enqueues it then.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import BadHeaderError
from django.db import transaction
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task

from apikeys.models import ApiKey
from emails.delivery import smtp
from emails.delivery.mime import build_message, make_message_id
from emails.models import STATUS_RANK, BlacklistEntry, Email, EmailRecipient, Status

logger = logging.getLogger(__name__)

DELIVER_TASK = "emails.tasks.deliver_email"
HARD_BOUNCE = "Hard bounce"
SOFT_BOUNCE = "Soft bounce"
RETRY_WINDOW_OVER = "Not delivered within the retry window"
# Exponential backoff between attempts: 1, 2, 4 ... minutes, never more than an hour apart.
RETRY_BASE_SECONDS = 60
RETRY_MAX_DELAY_SECONDS = 60 * 60
# A task is enqueued on commit; an email still unclaimed this long after it was recorded lost its
# task (a broker outage between commit and enqueue) or the workers are behind.
UNCLAIMED_GRACE_SECONDS = 60
SWEEP_BATCH = 1000
# Test-mode emails never reach the relay; these primary recipients simulate a failure.
SIMULATOR_DOMAIN = "simulator.postman.test"

_SUB_TYPE_MAX = Email._meta.get_field("error_sub_type").max_length


def _below(status: str) -> list[str]:
    return [other for other, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]


def _raised_to(status: str) -> Case:
    """The status column raised to ``status``, or left alone if it is already higher or equal."""
    return Case(When(status__in=_below(status), then=Value(status)), default=F("status"))


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
    transaction.on_commit(lambda: async_task(DELIVER_TASK, email_id))


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


def email_mark_accepted(*, email: Email, reply: str, at: datetime) -> None:
    """The relay took the email for its primary recipient (SMTP 250)."""
    Email.objects.filter(id=email.id).update(
        status=_raised_to(Status.ACCEPTED),
        # A late record still keeps its timestamp, even if a provider event got here first.
        accepted_at=Coalesce(F("accepted_at"), Value(at, output_field=DateTimeField())),
        claimed_until=None,
        last_smtp_response=reply,
        updated_at=at,
    )


def email_mark_bounced(*, email: Email, error_code: str, error_sub_type: str, at: datetime) -> None:
    """The email failed for its primary recipient (``Hard bounce`` or ``Soft bounce``)."""
    Email.objects.filter(id=email.id, status__in=_below(Status.BOUNCED)).update(
        status=Status.BOUNCED,
        error_code=error_code,
        error_sub_type=error_sub_type[:_SUB_TYPE_MAX],
        claimed_until=None,
        last_smtp_response=error_sub_type,
        updated_at=at,
    )


def recipients_mark_accepted(*, email: Email, addresses: list[str], at: datetime) -> None:
    EmailRecipient.objects.filter(email=email, address__in=addresses).update(
        status=_raised_to(Status.ACCEPTED), updated_at=at
    )


def recipients_mark_bounced(
    *, email: Email, addresses: list[str], error_code: str, error_sub_type: str, at: datetime
) -> None:
    EmailRecipient.objects.filter(
        email=email, address__in=addresses, status__in=_below(Status.BOUNCED)
    ).update(
        status=Status.BOUNCED,
        error_code=error_code,
        error_sub_type=error_sub_type[:_SUB_TYPE_MAX],
        updated_at=at,
    )


def blacklist_add_hard_bounce(*, address: str, reply: str) -> None:
    BlacklistEntry.objects.get_or_create(
        address=address.lower(),
        defaults={
            "source": BlacklistEntry.Source.HARD_BOUNCE,
            "reason": f"Hard bounce: {reply}"[:500],
        },
    )


def retry_delay(*, attempt: int) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1-based): exponential, with jitter.

    "Equal jitter": half the exponential delay plus a random part of the other half, so that
    emails that failed together (a relay outage) do not all come back in the same minute.
    """
    delay = min(RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0), RETRY_MAX_DELAY_SECONDS)
    return timedelta(seconds=delay / 2 + random.uniform(0, delay / 2))


def _retry_deadline(email: Email) -> datetime:
    return email.created_at + timedelta(seconds=settings.DELIVERY_RETRY_SECONDS)


@transaction.atomic
def email_bounce(
    *, email: Email, recipients: list[str], error_code: str, reason: str, at: datetime
) -> None:
    """Bounce the email and the given (still pending) recipients with one reason."""
    recipients_mark_bounced(
        email=email, addresses=recipients, error_code=error_code, error_sub_type=reason, at=at
    )
    email_mark_bounced(email=email, error_code=error_code, error_sub_type=reason, at=at)


def email_defer(*, email: Email, recipients: list[str], reason: str, now: datetime) -> None:
    """A transient failure: retry later, or give up with a soft bounce once the window is over.

    Until then the email stays UNSENT with no error_code (the API contract for "queued") and
    carries the failure in ``last_smtp_response``. The next attempt time is stored as the lease,
    so no task can claim the email before it, and the sweeper re-enqueues it after.
    """
    deadline = _retry_deadline(email)
    if now >= deadline:
        email_bounce(
            email=email, recipients=recipients, error_code=SOFT_BOUNCE, reason=reason, at=now
        )
        return
    retry_at = min(now + retry_delay(attempt=email.attempts), deadline)
    Email.objects.filter(_pending(), id=email.id).update(
        claimed_until=retry_at, last_smtp_response=reason
    )
    logger.info("Email %s: hand-off failed (%s), retrying at %s", email.id, reason, retry_at)


@transaction.atomic
def email_record_handoff(
    *, email: Email, primary: str, handoff: smtp.Handoff, now: datetime
) -> None:
    """Record the relay's per-recipient answer.

    The email follows its primary recipient. A refused cc/bcc gets its own error: 5xx is a hard
    bounce (and joins the blacklist); a 4xx is retried with the primary if the primary is retried
    too, and is a soft bounce otherwise, since a cc is never sent on its own.
    """
    if handoff.accepted:
        recipients_mark_accepted(email=email, addresses=handoff.accepted, at=now)
    transient: dict[str, smtp.Reply] = {}
    for address, reply in handoff.refused.items():
        if reply.permanent:
            recipients_mark_bounced(
                email=email,
                addresses=[address],
                error_code=HARD_BOUNCE,
                error_sub_type=str(reply),
                at=now,
            )
            blacklist_add_hard_bounce(address=address, reply=str(reply))
        else:
            transient[address] = reply

    if primary in transient:
        email_defer(
            email=email, recipients=list(transient), reason=str(transient[primary]), now=now
        )
        return
    for address, reply in transient.items():
        recipients_mark_bounced(
            email=email,
            addresses=[address],
            error_code=SOFT_BOUNCE,
            error_sub_type=str(reply),
            at=now,
        )
    if primary in handoff.accepted:
        email_mark_accepted(email=email, reply=str(handoff.reply), at=now)
    else:
        email_mark_bounced(
            email=email,
            error_code=HARD_BOUNCE,
            error_sub_type=str(handoff.refused[primary]),
            at=now,
        )


def _simulate(*, email: Email, recipients: list[str], now: datetime) -> None:
    """Test mode: the lifecycle without the relay, steered by the primary recipient."""
    local_part, _, domain = email.recipient.partition("@")
    if domain == SIMULATOR_DOMAIN and local_part in ("bounce", "softbounce"):
        code = HARD_BOUNCE if local_part == "bounce" else SOFT_BOUNCE
        email_bounce(
            email=email, recipients=recipients, error_code=code, reason="Simulated", at=now
        )
        return
    with transaction.atomic():
        recipients_mark_accepted(email=email, addresses=recipients, at=now)
        email_mark_accepted(email=email, reply="250 Simulated (test mode)", at=now)


def email_deliver(*, email_id: int) -> None:
    """Hand one email to the relay: the body of the ``deliver_email`` task."""
    now = timezone.now()
    email = email_claim(email_id=email_id, now=now)
    if email is None:
        logger.debug("Email %s: not pending or claimed elsewhere, nothing to do", email_id)
        return
    recipients = list(
        email.recipients.filter(status=Status.UNSENT, error_code__isnull=True)
        .order_by("id")
        .values_list("address", flat=True)
    )
    if email.mode == ApiKey.Mode.TEST:
        _simulate(email=email, recipients=recipients, now=now)
        return
    lease = timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    if email.attempts > 1 and now > _retry_deadline(email) + lease:
        # The last scheduled attempt would have been claimed long ago: the earlier attempts
        # died with their worker (a crash loop). Stop here rather than retry forever.
        reason = email.last_smtp_response or RETRY_WINDOW_OVER
        email_bounce(
            email=email, recipients=recipients, error_code=SOFT_BOUNCE, reason=reason, at=now
        )
        return
    if email.recipient not in recipients:
        # Cannot happen for a row the send API recorded; never loop on one that breaks the rule.
        logger.error("Email %s: primary recipient is not pending", email.id)
        reason = "No deliverable primary recipient"
        email_bounce(
            email=email, recipients=recipients, error_code=HARD_BOUNCE, reason=reason, at=now
        )
        return

    try:
        built = build_message(email=email, recipients=recipients)
        handoff = smtp.send(
            mail_from=built.mail_from, recipients=built.recipients, message=built.message
        )
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
        email_record_handoff(email=email, primary=email.recipient, handoff=handoff, now=now)
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
        async_task(DELIVER_TASK, email_id)
    if ids:
        logger.info("Re-enqueued %d pending email(s)", len(ids))
    return len(ids)
