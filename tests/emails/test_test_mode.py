"""Test mode through the real send API: emails of a test key walk the lifecycle without ever
reaching the relay, and simulator addresses produce bounces and complaints."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from accounts.models import AuditEvent
from emails.models import BlacklistEntry, EmailEvent, EmailRecipient, Status, Suppression
from emails.tasks import deliver_email
from tests.queue import queued_email_ids

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queue")]

SEND = "/v1/transactional/email/send"
T = EmailEvent.Type


@pytest.fixture
def test_api(owner, keyed_client_for):
    return keyed_client_for(owner, test=True)


@pytest.fixture
def send_and_deliver(test_api, smtp_peer, django_capture_on_commit_callbacks):
    """Send through the API, run the queued task like a worker would, return the shown email."""

    def send(recipient: str, **fields) -> dict:
        body = {"recipient": recipient, "subject": "Hi", "body": "<p>Hello</p>", **fields}
        with django_capture_on_commit_callbacks(execute=True):
            response = test_api.client.post(SEND, body, format="json")
        assert response.status_code == HTTPStatus.CREATED, response.json()
        assert response.json()["mode"] == "test"
        assert queued_email_ids() == [int(response.json()["id"])]
        deliver_email(queued_email_ids()[0])
        shown = test_api.client.get(f"/v1/transactional/email/{response.json()['id']}")
        return shown.json()

    return send


def timeline(email_id: int, address: str) -> list[str]:
    return list(
        EmailEvent.objects.filter(email_id=email_id, recipient__address=address)
        .order_by("occurred_at", "id")
        .values_list("type", flat=True)
    )


def test_a_test_email_walks_accepted_sent_delivered_without_the_relay(send_and_deliver, smtp_peer):
    shown = send_and_deliver("someone@example.com", cc=["carol@example.com"])

    assert smtp_peer.received == []
    assert smtp_peer.connections == 0
    assert shown["status"] == "DELIVERED"
    assert shown["error_code"] is None
    assert shown["accepted_at"] < shown["sent_at"] < shown["delivered_at"]
    assert shown["opened_at"] is None
    for address in ("someone@example.com", "carol@example.com"):
        assert timeline(shown["id"], address) == [T.ACCEPTED, T.SENT, T.DELIVERED]
    assert set(EmailRecipient.objects.values_list("status", flat=True)) == {Status.DELIVERED}


def test_the_bounce_simulator_is_a_hard_bounce_without_a_blacklist_entry(
    send_and_deliver, smtp_peer
):
    shown = send_and_deliver("bounce@simulator.postman.test")

    assert (shown["status"], shown["error_code"], shown["error_sub_type"]) == (
        "BOUNCED",
        "Hard bounce",
        "Simulated",
    )
    assert timeline(shown["id"], "bounce@simulator.postman.test") == [
        T.ACCEPTED,
        T.SENT,
        T.BOUNCED,
    ]
    assert smtp_peer.received == []
    assert not BlacklistEntry.objects.exists()
    assert not AuditEvent.objects.filter(action="blacklist.added").exists()


def test_the_soft_bounce_simulator_is_a_soft_bounce(send_and_deliver):
    shown = send_and_deliver("softbounce@simulator.postman.test")

    assert (shown["status"], shown["error_code"]) == ("BOUNCED", "Soft bounce")
    assert not BlacklistEntry.objects.exists()


def test_the_complaint_simulator_is_delivered_then_a_complaint_without_a_suppression(
    send_and_deliver, smtp_peer
):
    shown = send_and_deliver("complaint@simulator.postman.test")

    assert (shown["status"], shown["error_code"]) == ("COMPLAINT", "abuse")
    assert shown["delivered_at"] is not None
    assert timeline(shown["id"], "complaint@simulator.postman.test") == [
        T.ACCEPTED,
        T.SENT,
        T.DELIVERED,
        T.COMPLAINT,
    ]
    assert smtp_peer.received == []
    assert not Suppression.objects.exists()
    assert not BlacklistEntry.objects.exists()


def test_a_simulator_cc_bounces_alone_and_the_email_follows_its_primary(send_and_deliver):
    shown = send_and_deliver("someone@example.com", bcc=["bounce@simulator.postman.test"])

    assert shown["status"] == "DELIVERED"
    bounced = EmailRecipient.objects.get(address="bounce@simulator.postman.test")
    assert (bounced.status, bounced.error_code) == (Status.BOUNCED, "Hard bounce")
    assert not BlacklistEntry.objects.exists()


def test_a_test_email_gets_no_tracking_pixel_and_no_message_at_all(send_and_deliver, smtp_peer):
    shown = send_and_deliver("someone@example.com")

    # Nothing is built or sent, so nothing could be opened: opens never happen in test mode.
    assert smtp_peer.received == []
    assert not EmailEvent.objects.filter(email_id=shown["id"], type=T.OPENED).exists()
