"""The API key journey as a new user lives it (issue: API keys, "Done when")."""

from __future__ import annotations

from http import HTTPStatus

from rest_framework.test import APIClient

from apikeys.services import GRACE_PERIODS, apikey_create, apikey_revoke, apikey_rotate
from emails.models import Email
from emails.tasks import deliver_email

SEND = "/v1/transactional/email/send"
EMAIL = {"recipient": "citizen@example.com", "subject": "Hello", "body": "<p>Hi</p>"}


def client_for(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def send_and_deliver(plaintext: str, django_capture_on_commit_callbacks) -> Email:
    with django_capture_on_commit_callbacks():
        response = client_for(plaintext).post(SEND, EMAIL, format="json")
    assert response.status_code == HTTPStatus.CREATED, response.json()
    email_id = int(response.json()["id"])
    deliver_email(email_id)  # what the worker does with the queued task
    return Email.objects.get(pk=email_id)


def test_create_send_rotate_revoke(owner, smtp_peer, django_capture_on_commit_callbacks):
    old = apikey_create(owner=owner, label="Payments")
    assert send_and_deliver(old.plaintext, django_capture_on_commit_callbacks).status == "ACCEPTED"

    new = apikey_rotate(key=old.key, grace=GRACE_PERIODS["1h"])
    assert send_and_deliver(old.plaintext, django_capture_on_commit_callbacks).status == "ACCEPTED"
    assert send_and_deliver(new.plaintext, django_capture_on_commit_callbacks).status == "ACCEPTED"

    apikey_revoke(key=old.key)
    refused = client_for(old.plaintext).post(SEND, EMAIL, format="json")
    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    assert client_for(new.plaintext).get("/v1/transactional/email?limit=1").status_code == 200
    assert len(smtp_peer.received) == 3


def test_a_test_key_email_reaches_delivered_without_the_relay(
    owner, smtp_peer, django_capture_on_commit_callbacks
):
    test_key = apikey_create(owner=owner, label="CI", test=True)

    email = send_and_deliver(test_key.plaintext, django_capture_on_commit_callbacks)

    assert email.mode == "test"
    assert email.status == "DELIVERED"
    assert email.accepted_at and email.sent_at and email.delivered_at
    assert smtp_peer.received == []
