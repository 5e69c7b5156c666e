"""Delivery events: one EmailEvent row per thing that happened to a recipient, and the statuses
and timestamps those events move (SPEC §4 "Status model").

Every writer of delivery status (the worker, the test-mode simulator, the open pixel, Amazon SES
callbacks) goes through ``event_record``, so the rules live in one place:

- The event row is inserted first. A ``provider_event_id`` seen before makes the whole call a
  no-op (returns None): providers deliver at least once, and a retried callback must not move
  anything twice.
- The recipient's status only moves up (``STATUS_RANK``). A late or lower event still gets its row
  and, for the primary recipient, its timestamp on the email, but never lowers the status.
- The email mirrors its primary recipient: status, ``error_code`` and ``error_sub_type`` follow the
  primary's events, and so do ``accepted_at``, ``sent_at``, ``delivered_at`` and ``opened_at``
  (each the earliest such event, so ``opened_at`` is the first open whatever order events arrive).

Each change is one conditional UPDATE evaluated by the database, never a read-modify-write in
Python, so two workers recording events for the same email at once cannot undo each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connections, transaction
from django.db.models import CharField, DateTimeField, Expression, F, Field, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from emails.models import STATUS_RANK, Email, EmailEvent, EmailRecipient, Status

logger = logging.getLogger(__name__)

HARD_BOUNCE = "Hard bounce"
SOFT_BOUNCE = "Soft bounce"

EventType = EmailEvent.Type

# The status an event raises its recipient to; None for events that only go into the history.
EVENT_STATUS: dict[str, str | None] = {
    EventType.ACCEPTED: Status.ACCEPTED,
    EventType.SENT: Status.SENT,
    EventType.DELIVERED: Status.DELIVERED,
    EventType.OPENED: Status.OPENED,
    EventType.BOUNCED: Status.BOUNCED,
    # The provider refused to send the message at all (Amazon SES "Reject", e.g. a virus).
    EventType.REJECTED: Status.BOUNCED,
    EventType.COMPLAINT: Status.COMPLAINT,
    # A relay 4xx or connection failure before hand-off (the worker retries) ...
    EventType.DEFERRED: None,
    # ... and a provider's "still trying" after hand-off (Amazon SES "DeliveryDelay").
    EventType.DELAYED: None,
}
# Statuses that carry an error_code (the bounce type, or the complaint's feedback type).
_ERROR_STATUSES = {Status.BOUNCED, Status.COMPLAINT}

EMAIL_TIMESTAMP: dict[str, str] = {
    EventType.ACCEPTED: "accepted_at",
    EventType.SENT: "sent_at",
    EventType.DELIVERED: "delivered_at",
    EventType.OPENED: "opened_at",
}

_DETAIL_MAX = EmailEvent._meta.get_field("detail").max_length
_ERROR_CODE_MAX = Email._meta.get_field("error_code").max_length
_SUB_TYPE_MAX = Email._meta.get_field("error_sub_type").max_length


def statuses_below(status: str) -> list[str]:
    return [other for other, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]


def _truncate(value: str | None, limit: int | None) -> str | None:
    return value[:limit] if value is not None and limit else value


def event_record(
    *,
    email: Email,
    recipient: EmailRecipient | None,
    type: str,
    occurred_at: datetime,
    provider_event_id: str | None = None,
    detail: str = "",
    payload: dict | None = None,
    error_code: str | None = None,
    error_sub_type: str | None = None,
) -> EmailEvent | None:
    """Record that ``type`` happened to ``recipient`` of ``email`` at ``occurred_at``.

    ``recipient`` None is an email-level event (something about the message, not one address);
    it moves the email itself. ``error_code`` is required for bounces (``Hard bounce`` or
    ``Soft bounce``) and complaints (the feedback type). Returns the new event, or None when
    ``provider_event_id`` was recorded before (nothing changes then).
    """
    status = EVENT_STATUS[type]
    if status in _ERROR_STATUSES and not error_code:
        raise ValueError(f"a {type} event needs an error_code")
    if status not in _ERROR_STATUSES:
        error_code = error_sub_type = None
    error_code = _truncate(error_code, _ERROR_CODE_MAX)
    error_sub_type = _truncate(error_sub_type, _SUB_TYPE_MAX)

    return _event_apply(
        email=email,
        recipient=recipient,
        type=type,
        status=status,
        occurred_at=occurred_at,
        provider_event_id=provider_event_id,
        detail=detail,
        payload=payload,
        error_code=error_code,
        error_sub_type=error_sub_type,
    )


# No savepoint of its own: inside the worker's transaction it would only add round trips, and
# the arguments are validated before it runs.
@transaction.atomic(savepoint=False)
def _event_apply(
    *,
    email: Email,
    recipient: EmailRecipient | None,
    type: str,
    status: str | None,
    occurred_at: datetime,
    provider_event_id: str | None,
    detail: str,
    payload: dict | None,
    error_code: str | None,
    error_sub_type: str | None,
) -> EmailEvent | None:
    try:
        # A savepoint: a duplicate must not poison the caller's transaction. Only an event with
        # a provider id can be a duplicate; the worker's own events skip the round trips.
        with transaction.atomic(savepoint=provider_event_id is not None):
            event = EmailEvent.objects.create(
                email=email,
                recipient=recipient,
                type=type,
                occurred_at=occurred_at,
                provider_event_id=provider_event_id,
                detail=(detail or "")[:_DETAIL_MAX],
                payload=payload,
            )
    except IntegrityError:
        # The unique index on provider_event_id settles concurrent duplicates too: the second
        # insert waits for the first transaction and then fails here.
        if (
            provider_event_id
            and EmailEvent.objects.filter(provider_event_id=provider_event_id).exists()
        ):
            return None
        raise

    now = timezone.now()
    if recipient is not None and status is not None:
        EmailRecipient.objects.filter(id=recipient.id, status__in=statuses_below(status)).update(
            status=status, error_code=error_code, error_sub_type=error_sub_type, updated_at=now
        )
    if recipient is None or recipient.is_primary:
        _email_follow(
            email=email,
            type=type,
            status=status,
            occurred_at=occurred_at,
            error_code=error_code,
            error_sub_type=error_sub_type,
            now=now,
        )
    return event


def _email_follow(
    *,
    email: Email,
    type: str,
    status: str | None,
    occurred_at: datetime,
    error_code: str | None,
    error_sub_type: str | None,
    now: datetime,
) -> None:
    """Move the email after an event of its primary recipient: one UPDATE, decided in SQL."""
    changes = email_follow_changes(
        type=type,
        status=status,
        at=Value(occurred_at, output_field=DateTimeField()),
        error_code=error_code,
        error_sub_type=error_sub_type,
        now=now,
    )
    Email.objects.filter(id=email.id).update(**changes)


def email_follow_changes(
    *,
    type: str,
    status: str | None,
    at: Expression,
    error_code: str | None,
    error_sub_type: str | None,
    now: datetime,
) -> dict[str, object]:
    """The changes to an email row (``QuerySet.update`` keywords) after an event of ``type`` of
    its primary recipient that happened ``at`` (an expression: one value, or one per email).

    The status only moves up, and the error fields move with it; the event's timestamp field
    keeps the earliest such event."""
    changes: dict[str, object] = {"updated_at": now}
    if status is not None:
        moved = {"status": status, "error_code": error_code, "error_sub_type": error_sub_type}
        for field, value in moved.items():
            changes[field] = _if_raised(status, field, value)
    field = EMAIL_TIMESTAMP.get(type)
    if field is not None:
        # The earliest such event, whatever order they arrive in (LEAST of NULL and a value is
        # NULL on SQLite, hence the COALESCE).
        changes[field] = Least(Coalesce(F(field), at), at)
    return changes


def _if_raised(status: str, field: str, value: str | None) -> RawSQL:
    """``value`` in the rows whose status is below ``status`` (the status moves up), the field's
    own value in the others: ``CASE WHEN status IN (...) THEN value ELSE field END``. Written as
    SQL because a ``Case``/``When`` of the same cost more to resolve and compile than the whole
    UPDATE costs to run (most of a small delivery batch's recording)."""
    quote = connections[Email.objects.db].ops.quote_name
    status_column, column = (
        quote(Email._meta.get_field(name).column) for name in ("status", field)
    )
    below = statuses_below(status)
    placeholders = ", ".join(["%s"] * len(below))
    # Only placeholders and the model's own column names are interpolated.
    sql = f"CASE WHEN {status_column} IN ({placeholders}) THEN %s ELSE {column} END"
    return RawSQL(sql, [*below, value], output_field=CharField())  # noqa: S611


def per_email(values: dict[int, object], output_field: Field) -> RawSQL:
    """An expression worth ``values[id]`` in the row of each email id (``CASE id WHEN ...``):
    one UPDATE of many emails, each with its own value. Written as SQL because a ``Case`` of one
    ``When`` per email cost more to compile than the whole statement costs to run."""
    connection = connections[Email.objects.db]
    whens = " ".join(["WHEN %s THEN %s"] * len(values))
    params: list[object] = []
    for email_id, value in values.items():
        params += [email_id, output_field.get_db_prep_value(value, connection)]
    # Only placeholders are interpolated; every value is a parameter.
    sql = f"CASE {connection.ops.quote_name('id')} {whens} END"
    return RawSQL(sql, params, output_field=output_field)  # noqa: S611


def provider_message_ids_set(ids: dict[int, str]) -> None:
    """Store, for each email id, the message id its provider (Amazon SES) gave it, unless it has
    one: one UPDATE for all. An id another email already holds is left out and logged, never
    raised: bookkeeping must not fail a hand-off or a callback that happened."""
    ids = {email_id: provider_id[:255] for email_id, provider_id in ids.items()}
    if not ids:
        return
    try:
        with transaction.atomic():
            Email.objects.filter(id__in=ids, provider_message_id__isnull=True).update(
                provider_message_id=per_email(ids, CharField())
            )
        return
    except IntegrityError:
        if len(ids) == 1:
            [(email_id, provider_id)] = ids.items()
            logger.warning("Email %s: provider message id %s is taken", email_id, provider_id)
            return
    for email_id, provider_id in ids.items():
        provider_message_ids_set({email_id: provider_id})


@dataclass(frozen=True)
class Acceptance:
    """The relay accepted ``email`` for all of ``recipients`` (its primary among them) ``at``."""

    email: Email
    recipients: list[EmailRecipient]
    at: datetime
    reply: str


def events_record_accepted(
    *, acceptances: list[Acceptance], email_changes: dict[str, object] | None = None
) -> None:
    """``event_record(type=ACCEPTED)`` for every recipient of every acceptance, with the same
    rules, in three statements however many emails there are (the delivery worker's batches):
    the event rows, the recipients' status and the emails (plus ``email_changes``, more
    ``update`` keywords for the same emails)."""
    if not acceptances:
        return
    for acceptance in acceptances:
        if not any(r.is_primary for r in acceptance.recipients):
            raise ValueError(f"email {acceptance.email.id}: the primary recipient is not accepted")
    _accepted_apply(acceptances=acceptances, email_changes=email_changes or {})


@transaction.atomic(savepoint=False)
def _accepted_apply(*, acceptances: list[Acceptance], email_changes: dict[str, object]) -> None:
    now = timezone.now()
    EmailEvent.objects.bulk_create(
        EmailEvent(
            email=acceptance.email,
            recipient=recipient,
            type=EventType.ACCEPTED,
            occurred_at=acceptance.at,
            detail=acceptance.reply[:_DETAIL_MAX],
        )
        for acceptance in acceptances
        for recipient in acceptance.recipients
    )
    EmailRecipient.objects.filter(
        id__in=[r.id for acceptance in acceptances for r in acceptance.recipients],
        status__in=statuses_below(Status.ACCEPTED),
    ).update(status=Status.ACCEPTED, error_code=None, error_sub_type=None, updated_at=now)
    at = per_email({a.email.id: a.at for a in acceptances}, DateTimeField())
    changes = email_follow_changes(
        type=EventType.ACCEPTED,
        status=Status.ACCEPTED,
        at=at,
        error_code=None,
        error_sub_type=None,
        now=now,
    )
    Email.objects.filter(id__in=[a.email.id for a in acceptances]).update(
        **changes, **email_changes
    )


# Opens after this many are not recorded: status and opened_at cannot change any more, and a
# token fetched in a loop (a scanner, a reload-happy client) must not grow the table forever.
MAX_OPEN_EVENTS = 20


def email_open_record(*, email_id: int, at: datetime, user_agent: str = "") -> EmailEvent | None:
    """An open-tracking pixel of ``email_id`` was fetched (the token was checked by the caller).

    Attributed to the primary recipient: one message goes to all recipients, so the pixel cannot
    say which of them opened it, and the email's status is the primary's. The client's IP address
    is not kept (personal data that nobody asked for); the user agent is, so an operator can tell
    a person from an image proxy or a security scanner. Returns None for an unknown email and
    when the email already has ``MAX_OPEN_EVENTS`` opens.
    """
    # Only the id: the row's body can be large, and a pixel may be fetched many times.
    email = Email.objects.filter(id=email_id).only("id").first()
    if email is None:
        return None
    opens = EmailEvent.objects.filter(email=email, type=EventType.OPENED)
    if opens[:MAX_OPEN_EVENTS].count() >= MAX_OPEN_EVENTS:
        return None
    return event_record(
        email=email,
        recipient=email.recipients.filter(kind=EmailRecipient.Kind.TO).first(),
        type=EventType.OPENED,
        occurred_at=at,
        detail="Open-tracking pixel fetched",
        payload={"user_agent": user_agent[:500]} if user_agent else None,
    )
