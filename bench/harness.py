"""The Django side of the benchmark: ``python -m bench.harness seed COUNT BODY_JSON``.

Run by ``bench/run.py`` in a subprocess with the same environment as the service (so the broker
is the one the phase measures). It records COUNT emails exactly as the send API would leave them
(UNSENT, sanitised subject and HTML, one primary recipient) and queues their delivery as the send
API does (``enqueue_unless_pending``): one task while none is waiting to start, with either
broker; the worker's full batches then queue the next ones.
"""

from __future__ import annotations

import json
import os
import sys

import django

BATCH = 500


def seed(count: int, body_path: str) -> None:
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from apikeys.models import ApiKey
    from emails.api.send_input import parse_send_input
    from emails.models import Email, EmailRecipient
    from emails.queue import enqueue_unless_pending
    from emails.sanitise import sanitise_body, sanitise_subject
    from emails.services.delivery import DELIVER_TASK

    with open(body_path, encoding="utf-8") as handle:
        payload = parse_send_input(json.load(handle))
    key = ApiKey.objects.select_related("owner").get(label="bench")
    subject, html = sanitise_subject(payload.subject), sanitise_body(payload.body)
    for start in range(0, count, BATCH):
        now = timezone.now()
        size = min(BATCH, count - start)
        with transaction.atomic():
            emails = Email.objects.bulk_create(
                Email(
                    agency_id=key.agency_id,
                    api_key=key,
                    mode=key.mode,
                    sender=settings.DEFAULT_FROM_EMAIL,
                    recipient=f"citizen{start + i}@example.com",
                    reply_to=key.owner.email,
                    params=payload.params,
                    subject=subject,
                    html=html,
                    tag=payload.tag,
                    created_at=now,
                    updated_at=now,
                )
                for i in range(size)
            )
            EmailRecipient.objects.bulk_create(
                EmailRecipient(email=email, kind="to", address=email.recipient, updated_at=now)
                for email in emails
            )
            # The ORM broker writes its queue rows in this transaction; Redis pushes at once.
            for email in emails:
                enqueue_unless_pending(DELIVER_TASK, email.id)


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_bench")
    django.setup()
    command, *args = argv
    if command == "seed":
        seed(int(args[0]), args[1])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
