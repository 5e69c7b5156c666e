"""Issue 7's "done when", as a new staff member would do it: find an email by recipient, see
why it bounced, take the address off the blacklist with a reason, and the next send goes out;
the audit log shows who did it."""

from __future__ import annotations

import re
from http import HTTPStatus

from accounts.models import AuditEvent
from emails.models import BlacklistEntry, Email
from emails.services.delivery import email_deliver

SEND = "/v1/transactional/email/send"
ADDRESS = "gone@example.com"


def test_staff_unblock_a_bounced_address_and_the_next_send_succeeds(
    api, smtp_peer, staff, staff_client, django_capture_on_commit_callbacks
):
    # An agency's email hard-bounces: the relay refuses the mailbox, the worker records it.
    smtp_peer.handler.rcpt_replies[ADDRESS] = "550 5.1.1 <gone@example.com>: No such user"
    body = {"recipient": ADDRESS, "subject": "Your appointment", "body": "<p>Tuesday 9am</p>"}
    sent = api.client.post(SEND, body, format="json")
    assert sent.status_code == HTTPStatus.CREATED
    email_deliver(email_id=int(sent.json()["id"]))
    assert Email.objects.get().status == "BOUNCED"
    assert BlacklistEntry.objects.get().address == ADDRESS
    refused = api.client.post(SEND, body, format="json")
    assert refused.json() == {
        "code": "invalid_template",
        "message": "Recipient email is blacklisted",
    }

    # 1. Staff search the emails by recipient.
    found = staff_client.get("/admin/emails/email/", {"q": ADDRESS})
    ids = set(re.findall(r"/admin/emails/email/(\d+)/change/", found.text))
    # Both are there: the bounced email and the refused one (recorded UNSENT with its error).
    assert ids == {str(pk) for pk in Email.objects.values_list("pk", flat=True)}
    assert len(ids) == 2

    # 2. The bounced email's page says why: the relay's answer, in the events.
    page = staff_client.get(f"/admin/emails/email/{sent.json()['id']}/change/").text
    assert "Hard bounce" in page
    assert "550 5.1.1 &lt;gone@example.com&gt;: No such user" in page
    remove_url = re.search(r'href="(/admin/emails/blacklistentry/\d+/delete/)"', page)[1]

    # 3. They follow the link and remove the address with a reason.
    assert 'name="reason"' in staff_client.get(remove_url).text
    removed = staff_client.post(remove_url, {"reason": "Mailbox restored, confirmed by phone"})
    assert removed.status_code == HTTPStatus.FOUND
    assert not BlacklistEntry.objects.exists()

    # 4. The agency's next send to the address is accepted and queued.
    smtp_peer.handler.rcpt_replies.clear()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        again = api.client.post(SEND, body, format="json")
    assert again.status_code == HTTPStatus.CREATED
    assert again.json()["error_code"] is None
    assert len(queued) == 1

    # 5. The audit log shows who did it, from where, and why.
    event = AuditEvent.objects.get(action="blacklist.removed")
    assert (event.actor, event.actor_kind, event.ip_address) == (staff, "staff", "127.0.0.1")
    assert event.details["reason"] == "Mailbox restored, confirmed by phone"
    assert event.details["source"] == "hard_bounce"
    log = staff_client.get("/admin/accounts/auditevent/", {"action": "blacklist.removed"}).text
    assert staff.email in log and ADDRESS in log
