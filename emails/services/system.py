"""Emails the service sends on its own behalf (key expiry reminders, login codes ...).

They go through the same pipeline as API emails — recorded, queued, delivered and tracked — so
they show up in the agency's email list and in the delivery timeline like any other.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Agency
from emails.models import BlacklistEntry, Email, EmailRecipient
from emails.sanitise import sanitise_body, sanitise_subject
from emails.services.delivery import email_enqueue


@transaction.atomic
def email_send_system(
    *, agency: Agency, to: list[str], subject: str, html: str, tag: str
) -> Email | None:
    """Queue a system email to ``to`` (the first address as recipient, the others in cc).

    Blacklisted addresses are left out; None when no address is left. The agency's own
    suppression list is deliberately not applied: it lists recipients of the agency's mail, and
    these are the service's mail to the agency's people (a login code must reach an admin even
    if a colleague suppressed their address). docs/staff-and-suppressions.md."""
    blacklisted = set(
        BlacklistEntry.objects.filter(address__in=to).values_list("address", flat=True)
    )
    addresses = [address for address in dict.fromkeys(to) if address not in blacklisted]
    if not addresses:
        return None
    now = timezone.now()
    subject = sanitise_subject(subject)
    email = Email.objects.create(
        agency=agency,
        sender=settings.DEFAULT_FROM_EMAIL,
        recipient=addresses[0],
        cc=addresses[1:],
        params={"subject": subject, "body": html, "from": settings.DEFAULT_FROM_EMAIL},
        subject=subject,
        html=sanitise_body(html),
        tag=tag,
        disable_tracking=True,
        created_at=now,
        updated_at=now,
    )
    EmailRecipient.objects.bulk_create(
        EmailRecipient(email=email, kind="to" if i == 0 else "cc", address=address, updated_at=now)
        for i, address in enumerate(addresses)
    )
    email_enqueue(email=email)
    return email
