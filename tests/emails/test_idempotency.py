"""Idempotency-Key on send (SPEC §5): no duplicate email, ever, from a retried request."""

from __future__ import annotations

import threading
from datetime import timedelta
from http import HTTPStatus

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from emails.models import Email, IdempotentRequest
from emails.services.idempotency import IN_FLIGHT, INVALID_KEY, KEY_REUSED
from tests.factories import BlacklistEntryFactory, VerifiedSenderFactory

SEND = "/v1/transactional/email/send"
EMAIL = {"recipient": "citizen@example.com", "subject": "OTP", "body": "<p>123456</p>"}


def send(api, key="order-42", data=None, **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.client.post(SEND, data or EMAIL, format="json", **headers, **extra)


def test_a_retry_replays_the_first_response_without_a_second_email(
    api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        first = send(api)
        retry = send(api, data={"body": EMAIL["body"], **EMAIL})  # other key order, same payload

    assert first.status_code == retry.status_code == HTTPStatus.CREATED
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Email.objects.count() == 1
    assert Email.objects.get().idempotency_key == "order-42"
    assert len(queued) == 1


def test_the_same_key_with_another_payload_is_a_conflict(api):
    send(api)

    response = send(api, data={**EMAIL, "subject": "Something else"})

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json() == {"code": "idempotency_conflict", "message": KEY_REUSED}
    assert Email.objects.count() == 1


def test_a_request_still_in_flight_is_a_conflict(api):
    from emails.services.idempotency import request_fingerprint

    IdempotentRequest.objects.create(
        agency=api.agency, key="order-42", fingerprint=request_fingerprint(EMAIL, [])
    )

    response = send(api)

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json() == {"code": "idempotency_conflict", "message": IN_FLIGHT}
    assert not Email.objects.exists()


def test_a_refused_send_is_replayed_too_and_recorded_once(api):
    BlacklistEntryFactory(address="citizen@example.com")

    first = send(api)
    retry = send(api)

    assert first.status_code == retry.status_code == HTTPStatus.BAD_REQUEST
    assert retry.json() == {"code": "invalid_template", "message": "Recipient email is blacklisted"}
    assert retry["Idempotent-Replayed"] == "true"
    assert Email.objects.count() == 1


def test_invalid_requests_do_not_use_up_the_key(api):
    invalid = send(api, data={**EMAIL, "recipient": "nope"})
    valid = send(api)

    assert invalid.status_code == HTTPStatus.BAD_REQUEST
    assert valid.status_code == HTTPStatus.CREATED
    assert "Idempotent-Replayed" not in valid


def test_keys_belong_to_one_agency(api, outsider_api):
    mine = send(api)
    theirs = send(outsider_api)

    assert mine.status_code == theirs.status_code == HTTPStatus.CREATED
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_key_is_free_again_after_24_hours(api):
    first = send(api)

    with time_machine.travel(timezone.now() + timedelta(hours=24, seconds=1)):
        later = send(api)

    assert later.status_code == HTTPStatus.CREATED
    assert later.json()["id"] != first.json()["id"]
    assert Email.objects.get(pk=first.json()["id"]).idempotency_key is None
    assert Email.objects.get(pk=later.json()["id"]).idempotency_key == "order-42"


def test_an_abandoned_claim_whose_email_was_recorded_replays_that_email(api):
    first = send(api)
    # As if the web process died after committing the email, before completing the claim.
    IdempotentRequest.objects.update(
        completed_at=None, created_at=timezone.now() - timedelta(minutes=11)
    )

    retry = send(api)

    assert retry.status_code == HTTPStatus.CREATED
    assert retry.json()["id"] == first.json()["id"]
    assert retry["Idempotent-Replayed"] == "true"
    assert Email.objects.count() == 1


def test_an_unexpected_error_releases_the_key(api, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("emails.api.send.email_send", explode)
    failed = send(api)
    monkeypatch.undo()
    retry = send(api)

    assert failed.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert retry.status_code == HTTPStatus.CREATED
    assert "Idempotent-Replayed" not in retry


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "line\nbreak"])
def test_malformed_keys_are_refused(api, key):
    response = send(api, key=key)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"code": "api_validation", "message": INVALID_KEY}
    assert not Email.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_send_one_email(owner, keyed_client_for):
    keyed = keyed_client_for(owner)
    keyed.agency.rate_limit_per_second = 0
    keyed.agency.save()
    results: list[int] = []
    barrier = threading.Barrier(4)

    def attempt():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {keyed.plaintext}")
        barrier.wait()
        try:
            response = client.post(SEND, EMAIL, format="json", HTTP_IDEMPOTENCY_KEY="burst")
            results.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 4
    assert set(results) <= {HTTPStatus.CREATED, HTTPStatus.CONFLICT}
    assert HTTPStatus.CREATED in results
    assert Email.objects.count() == 1


def test_attachments_are_part_of_the_payload(api):
    VerifiedSenderFactory(agency=api.agency, address="alerts@hdb.gov.sg")

    def send_with(content: bytes):
        data = {**EMAIL, "from": "alerts@hdb.gov.sg"}
        data["attachments"] = SimpleUploadedFile("notes.txt", content, "text/plain")
        return api.client.post(SEND, data, HTTP_IDEMPOTENCY_KEY="with-file")

    first = send_with(b"version one")
    retry = send_with(b"version one")
    changed = send_with(b"version two")

    assert first.status_code == retry.status_code == HTTPStatus.CREATED
    assert retry["Idempotent-Replayed"] == "true"
    assert changed.status_code == HTTPStatus.CONFLICT
    assert changed.json()["message"] == KEY_REUSED
    assert Email.objects.count() == 1
