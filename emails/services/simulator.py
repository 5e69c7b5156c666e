"""Test mode: the delivery lifecycle of an email sent with a test key, without the relay.

Each recipient walks ACCEPTED → SENT → DELIVERED as events a millisecond apart, the way Amazon
SES's mailbox simulator reports a real send, unless its address is one of the simulator's:

| address                              | outcome                                      |
|--------------------------------------|----------------------------------------------|
| ``bounce@simulator.postman.test``     | ACCEPTED → SENT → BOUNCED / ``Hard bounce``  |
| ``softbounce@simulator.postman.test`` | ACCEPTED → SENT → BOUNCED / ``Soft bounce``  |
| ``complaint@simulator.postman.test``  | … → DELIVERED → COMPLAINT / ``abuse``        |

The email follows its primary recipient as always. Nothing here touches the global blacklist or
the agency's suppressions: a test key must not be able to block a real address.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from emails.models import Email, EmailEvent, EmailRecipient
from emails.services.events import HARD_BOUNCE, SOFT_BOUNCE, event_record

SIMULATOR_DOMAIN = "simulator.postman.test"
SIMULATED_REPLY = "250 Simulated (test mode)"
SIMULATED_SUB_TYPE = "Simulated"
COMPLAINT_FEEDBACK_TYPE = "abuse"

EventType = EmailEvent.Type
# (event type, error_code) steps after ACCEPTED and SENT, per simulator local part.
_OUTCOMES: dict[str, list[tuple[str, str | None]]] = {
    "bounce": [(EventType.BOUNCED, HARD_BOUNCE)],
    "softbounce": [(EventType.BOUNCED, SOFT_BOUNCE)],
    "complaint": [(EventType.DELIVERED, None), (EventType.COMPLAINT, COMPLAINT_FEEDBACK_TYPE)],
}
_DELIVERED = [(EventType.DELIVERED, None)]


def _steps(address: str) -> list[tuple[str, str | None]]:
    local_part, _, domain = address.partition("@")
    outcome = _OUTCOMES.get(local_part) if domain == SIMULATOR_DOMAIN else None
    return [(EventType.ACCEPTED, None), (EventType.SENT, None), *(outcome or _DELIVERED)]


@transaction.atomic
def email_simulate(*, email: Email, recipients: list[EmailRecipient], now: datetime) -> None:
    """Record the simulated lifecycle of every pending recipient of a claimed test email."""
    for recipient in recipients:
        for step, (type, error_code) in enumerate(_steps(recipient.address)):
            event_record(
                email=email,
                recipient=recipient,
                type=type,
                occurred_at=now + timedelta(milliseconds=step),
                detail="Simulated (test mode)",
                error_code=error_code,
                error_sub_type=SIMULATED_SUB_TYPE if type == EventType.BOUNCED else None,
            )
    Email.objects.filter(id=email.id).update(
        claimed_until=None, last_smtp_response=SIMULATED_REPLY, message_id=email.message_id
    )
