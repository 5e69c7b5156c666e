"""Delivery of emails to the SMTP relay: enqueueing, claiming, hand-off and recording the outcome.

The email row is the queue record (see docs/delivery.md). A task carries only an email id, and
says "an email is due": the worker claims a batch of the oldest due emails (that one among them,
or it went in an earlier batch) with one UPDATE that sets a lease (``claimed_until``), so a
duplicate task or a second worker never takes the same email. The batch shares one relay
connection and its acceptances are recorded together. While an email waits for a retry, the same
column holds the time of the next attempt, and the periodic sweeper re-enqueues it then.

Every outcome is an event (``emails.services.events.event_record``): ACCEPTED per recipient the
relay took, BOUNCED per refused recipient, DEFERRED per recipient of a failed attempt that will
be retried. The event service moves the statuses; this module only adds what is particular to the
hand-off: the lease, the last relay reply, retries and the blacklist.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.core.mail import BadHeaderError
from django.db import connections, transaction
from django.db.models import Case, CharField, F, Q, When
from django.utils import timezone

from accounts.audit import Actor
from apikeys.models import ApiKey
from emails.delivery import smtp
from emails.delivery.mime import build_message, make_message_id
from emails.delivery.shutdown import sigterm_deferred
from emails.dkim import dkim_sign_built
from emails.models import BlacklistEntry, Email, EmailAttachment, EmailEvent, EmailRecipient, Status
from emails.queue import enqueue, enqueue_unless_pending, task_started
from emails.services.blacklist import blacklist_add
from emails.services.events import (
    HARD_BOUNCE,
    SOFT_BOUNCE,
    Acceptance,
    event_record,
    events_record_accepted,
    per_email,
    provider_message_ids_set,
)
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

    A task is queued unless one is already waiting to start (``enqueue_unless_pending``): it
    will claim this email with the others due. Only the id is queued, for the logs: the worker
    reads the rows, so it never acts on a stale copy, and an aborted request transaction never
    leaves a task behind for a row that does not exist. A task lost between the commit and the
    broker is made up for by the sweeper (``emails_requeue_stale``).
    """
    email_id = email.id
    transaction.on_commit(lambda: enqueue_unless_pending(DELIVER_TASK, email_id))


# The due ids are picked once, in a materialized CTE: as a plain ``IN (SELECT … LIMIT n)`` the
# planner may run the subquery again for each row it updates (a nested-loop semi-join), and each
# run skips the rows this very statement has just locked, so the claim took more than ``n``.
_CLAIM_SQL = (
    "WITH picked AS MATERIALIZED ("
    "SELECT id FROM {table} WHERE status = '{unsent}' AND error_code IS NULL"
    " AND (claimed_until IS NULL OR claimed_until < %s)"
    " ORDER BY created_at, id LIMIT %s{lock}"
    ") UPDATE {table} SET claimed_until = %s, attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM picked) RETURNING {columns}"
)


# The request's own parameters (the whole body again, as JSON) are the API's record of the send;
# delivery never reads them, and decoding them was a tenth of a claim.
_LEFT_DEFERRED = frozenset({"params"})


@cache
def _claim_sql(alias: str) -> str:
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(Email._meta.db_table)
    columns = ", ".join(
        quote(field.column)
        for field in Email._meta.concrete_fields
        if field.name not in _LEFT_DEFERRED
    )
    # PostgreSQL: concurrent claims skip each other's rows instead of waiting for them. SQLite
    # has one writer at a time anyway.
    skip_locked = connection.features.has_select_for_update_skip_locked
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    # The subquery walks the partial index ``email_pending`` in created_at order. Its status is
    # written out, not a parameter: a prepared statement's generic plan cannot match a
    # parameter with the index's predicate (status = 'UNSENT'), and read every UNSENT row
    # through another index instead, growing with the backlog. Only that constant and names
    # from the model's metadata are interpolated; every other value is a parameter.
    return _CLAIM_SQL.format(table=table, columns=columns, lock=lock, unsent=Status.UNSENT.value)


def emails_claim(*, now: datetime, limit: int) -> list[Email]:
    """Take the lease on up to ``limit`` due emails, oldest first, in one UPDATE ... RETURNING.

    Due: pending, and never claimed or with a lease (or retry time) in the past. Each email is
    taken by exactly one claim, whatever the number of workers and tasks. A lease is longer than
    the task timeout (``Q_CLUSTER``), so it can only expire for a worker that is gone.
    """
    alias = Email.objects.db
    ops = connections[alias].ops
    lease = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    params = [ops.adapt_datetimefield_value(now), limit, ops.adapt_datetimefield_value(lease)]
    emails = sorted(
        Email.objects.raw(_claim_sql(alias), params), key=lambda e: (e.created_at, e.id)
    )
    for email in emails:
        # Deterministic, so every attempt carries the same one; stored with the outcome.
        email.message_id = email.message_id or make_message_id(email.id)
    return emails


def emails_release(*, emails: list[Email]) -> None:
    """Give claimed emails back untried (the worker is stopping, or the relay is failing), and
    queue one task for them, so that a worker takes them again now rather than at the sweep.

    The attempt did not happen, so it does not count; the lease is cleared only if it is still
    the one this batch took.
    """
    if not emails:
        return
    released = Email.objects.filter(
        _pending(), id__in=[email.id for email in emails], claimed_until=emails[0].claimed_until
    ).update(claimed_until=None, attempts=F("attempts") - 1)
    if released:
        logger.info("%d email(s) released untried: %s", released, [email.id for email in emails])
        email_enqueue(email=emails[0])


def _finish(*, email: Email, reply: str) -> None:
    """Keep the relay's last reply and end the lease, unless the email still waits for a retry.

    The lease is kept on an email that is still pending: clearing it would let the sweeper send
    it again at once.
    """
    Email.objects.filter(id=email.id).update(
        last_smtp_response=reply,
        message_id=email.message_id,
        claimed_until=Case(When(_pending(), then=F("claimed_until")), default=None),
    )


def _provider_message_ids(replies: dict[int, str]) -> dict[int, str]:
    """The Amazon SES message ids in the relay's replies, by email id."""
    matches = {email_id: _SES_REPLY.match(reply) for email_id, reply in replies.items()}
    return {email_id: match["id"] for email_id, match in matches.items() if match}


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
    if not any(recipient.is_primary for recipient in recipients):
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
        claimed_until=retry_at, last_smtp_response=reason, message_id=email.message_id
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
    primary = next(r for r in recipients if r.is_primary)
    reply = str(handoff.reply) if handoff.reply else ""
    for address in handoff.accepted:
        event_record(
            email=email,
            recipient=by_address[address],
            type=EventType.ACCEPTED,
            occurred_at=now,
            detail=reply,
        )

    def bounce(address: str, refusal: smtp.Reply, error_code: str) -> None:
        event_record(
            email=email,
            recipient=by_address[address],
            type=EventType.BOUNCED,
            occurred_at=now,
            detail=str(refusal),
            error_code=error_code,
            error_sub_type=str(refusal),
        )

    transient: dict[str, smtp.Reply] = {}
    for address, refusal in handoff.refused.items():
        if refusal.permanent:
            bounce(address, refusal, HARD_BOUNCE)
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
        bounce(address, refusal, SOFT_BOUNCE)
    if primary.address in handoff.accepted:
        provider_message_ids_set(_provider_message_ids({email.id: reply}))
        _finish(email=email, reply=reply)
    else:
        _finish(email=email, reply=str(handoff.refused[primary.address]))


class _Outcome(enum.Enum):
    RECORDED = "recorded"  # the outcome is in the database
    UNTRIED = "untried"  # stopped before the relay took anything: to be released
    RELAY_FAILING = "relay failing"  # deferred; the rest of the batch would fail the same way


def email_deliver(*, email_id: int | None = None) -> None:
    """The body of the ``deliver_email`` task (queued for ``email_id``, or to go on with a full
    batch's successors): deliver batches of the oldest due emails, at most
    ``DELIVERY_BATCH_SIZE`` each, the task's own among them unless an earlier batch took it.

    After a full batch the task claims the next one itself, until a batch is not full or it has
    run for a third of the task timeout: a task handed over through the broker may wait for
    the broker's poll (0.1 s with the ORM broker) before it starts, which capped a backlog at
    one batch per poll. A full batch also first queues a task for the next one (unless one is
    waiting), so that every worker process has a batch while the backlog lasts.

    A SIGTERM that arrives meanwhile waits until the email in hand is handed off and recorded,
    or, if it comes before the relay took anything, until the rest of the batch is released
    (``shutdown.py``); the task then stops.
    """
    deadline = time.monotonic() + settings.WORKER_TASK_TIMEOUT / 3
    with sigterm_deferred() as stopping:
        task_started(DELIVER_TASK)
        while True:
            batch = emails_claim(now=timezone.now(), limit=settings.DELIVERY_BATCH_SIZE)
            if not batch:
                logger.debug("Task of email %s: no email is due, nothing to do", email_id)
                return
            full = len(batch) == settings.DELIVERY_BATCH_SIZE
            if full:
                enqueue_unless_pending(DELIVER_TASK)
            finished = _deliver_batch(batch, stopping=stopping, deadline=deadline)
            if not (full and finished) or stopping() or time.monotonic() > deadline:
                return


def _deliver_batch(batch: list[Email], *, stopping: Callable[[], bool], deadline: float) -> bool:
    """Hand each claimed email to the relay in turn, then record every clean acceptance at once.

    Failures are recorded as they happen. The batch stops early, releasing the emails it did not
    try, when the worker is stopping, when the relay fails transiently (the next ones would
    fail alike: each will be tried again, with its own backoff once it fails itself), or when
    it is past the task's ``deadline`` (a slow relay). Returns whether it went through the
    whole batch.
    """
    recipients = _recipients_of(batch)
    attachments = _attachments_of(batch)
    acceptances: list[Acceptance] = []
    # The emails the relay may have seen; the rest are released at the end.
    tried = 0
    try:
        for email in batch:
            # Out of time only after one email at least: a batch always makes progress.
            if stopping() or (tried and time.monotonic() > deadline):
                break
            pending, dropped = recipients[email.id]
            # Counted before the attempt: if it raises, the email's fate is unknown and its
            # lease, not a release, decides when it is tried again.
            tried += 1
            outcome = _deliver_claimed(
                email=email,
                recipients=pending,
                dropped=dropped,
                attachments=attachments.get(email.id, []),
                stopping=stopping,
            )
            if outcome is _Outcome.UNTRIED:
                tried -= 1
                break
            if isinstance(outcome, Acceptance):
                acceptances.append(outcome)
            elif outcome is _Outcome.RELAY_FAILING:
                break
        else:
            return True
        return False
    finally:
        # Also when something failed half-way: what the relay took is recorded first, then
        # the emails never tried go back at once rather than when their lease runs out.
        emails_record_accepted(acceptances=acceptances)
        emails_release(emails=batch[tried:])


def _recipients_of(batch: list[Email]) -> dict[int, tuple[list[EmailRecipient], set[str]]]:
    """Per email: the recipients still to send to, and the addresses dropped before sending
    (blacklisted at send time, or refused on an earlier attempt). One query for the batch."""
    result: dict[int, tuple[list[EmailRecipient], set[str]]] = {
        email.id: ([], set()) for email in batch
    }
    for recipient in EmailRecipient.objects.filter(email_id__in=result).order_by("id"):
        pending, dropped = result[recipient.email_id]
        if recipient.error_code is not None:
            dropped.add(recipient.address)
        elif recipient.status == Status.UNSENT:
            pending.append(recipient)
    return result


def _attachments_of(batch: list[Email]) -> dict[int, list[EmailAttachment]]:
    """Per email, its attachments: one query, and none when no email of the batch has any."""
    ids = [email.id for email in batch if email.attachments_metadata]
    result: dict[int, list[EmailAttachment]] = {}
    if ids:
        rows = EmailAttachment.objects.filter(email_id__in=ids).order_by("email_id", "position")
        for attachment in rows:
            result.setdefault(attachment.email_id, []).append(attachment)
    return result


def emails_record_accepted(*, acceptances: list[Acceptance]) -> None:
    """Record that the relay took each of these emails for all its recipients: the events, the
    statuses, the relay's reply, the Message-ID and the end of the lease, in three statements."""
    if not acceptances:
        return
    with transaction.atomic():
        events_record_accepted(
            acceptances=acceptances,
            email_changes={
                "last_smtp_response": per_email(
                    {a.email.id: a.reply for a in acceptances}, CharField()
                ),
                "message_id": per_email(
                    {a.email.id: a.email.message_id for a in acceptances}, CharField()
                ),
                "claimed_until": None,
            },
        )
    provider_message_ids_set(_provider_message_ids({a.email.id: a.reply for a in acceptances}))
    for acceptance in acceptances:
        _log_handoff(acceptance.email, len(acceptance.recipients), acceptance.reply)


def _log_handoff(email: Email, accepted: int, reply: str) -> None:
    logger.info(
        "Email %s: handed off to %d recipient(s): %s", email.id, accepted, reply or "none accepted"
    )


def _deliver_claimed(
    *,
    email: Email,
    recipients: list[EmailRecipient],
    dropped: set[str],
    attachments: list[EmailAttachment],
    stopping: Callable[[], bool],
) -> Acceptance | _Outcome:
    """Deliver one claimed email. A clean acceptance (every recipient taken) is returned for
    the batch to record; every other outcome is recorded here."""
    now = timezone.now()
    if email.mode == ApiKey.Mode.TEST:
        email_simulate(email=email, recipients=recipients, now=now)
        return _Outcome.RECORDED
    lease = timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    if email.attempts > 1 and now > _retry_deadline(email) + lease:
        # The last scheduled attempt would have been claimed long ago: the earlier attempts
        # died with their worker (a crash loop). Stop here rather than retry forever.
        reason = email.last_smtp_response or RETRY_WINDOW_OVER
        email_bounce(
            email=email, recipients=recipients, error_code=SOFT_BOUNCE, reason=reason, at=now
        )
        return _Outcome.RECORDED
    if not any(recipient.is_primary for recipient in recipients):
        # Cannot happen for a row the send API recorded; never loop on one that breaks the rule.
        logger.error("Email %s: primary recipient is not pending", email.id)
        reason = "No deliverable primary recipient"
        email_bounce(
            email=email, recipients=recipients, error_code=HARD_BOUNCE, reason=reason, at=now
        )
        return _Outcome.RECORDED

    try:
        built = build_message(
            email=email,
            recipients=[r.address for r in recipients],
            dropped=dropped,
            attachments=attachments,
        )
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
        return _Outcome.UNTRIED
    except smtp.PermanentError as exc:
        # The relay refused the message itself (sender or content), not an address: no blacklist.
        email_bounce(
            email=email, recipients=recipients, error_code=HARD_BOUNCE, reason=str(exc), at=now
        )
    except smtp.TransientError as exc:
        email_defer(email=email, recipients=recipients, reason=str(exc), now=now)
        return _Outcome.RELAY_FAILING
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
        reply = str(handoff.reply) if handoff.reply else ""
        if not handoff.refused:
            return Acceptance(email=email, recipients=recipients, at=timezone.now(), reply=reply)
        email_record_handoff(email=email, recipients=recipients, handoff=handoff, now=now)
        _log_handoff(email, len(handoff.accepted), reply)
    return _Outcome.RECORDED


def emails_requeue_stale(*, now: datetime | None = None) -> int:
    """Re-enqueue pending emails whose lease (or retry time) has passed, or that nobody claimed.

    Covers a crashed worker, a task lost before reaching the broker and every scheduled retry.
    A task delivers a batch of the oldest due emails, so one task is queued per
    ``DELIVERY_BATCH_SIZE`` of them. A re-enqueued email whose first task is merely slow is
    still taken by one claim only. Returns the number of emails found due.
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
    for email_id in ids[:: settings.DELIVERY_BATCH_SIZE]:
        enqueue(DELIVER_TASK, email_id)
    if ids:
        logger.info("Re-enqueued %d pending email(s)", len(ids))
    return len(ids)
