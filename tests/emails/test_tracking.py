"""The open-tracking pixel: ``GET /t/o/<token>.gif``."""

from __future__ import annotations

import re
from datetime import timedelta
from http import HTTPStatus

import pytest
import time_machine
from django.core import signing
from django.utils import timezone

from emails.models import Email, EmailEvent, Status
from emails.services.events import MAX_OPEN_EVENTS
from emails.tasks import deliver_email
from emails.tracking import TRANSPARENT_GIF, open_token
from tests.factories import EmailFactory

pytestmark = pytest.mark.django_db

NO_CACHE = "no-store, no-cache, must-revalidate, private"


def pixel_path(email_id: int) -> str:
    return f"/t/o/{open_token(email_id=email_id)}.gif"


def test_fetching_the_pixel_records_an_open_and_returns_a_transparent_gif(client):
    email = EmailFactory(status=Status.DELIVERED)
    before = timezone.now()

    response = client.get(pixel_path(email.id), HTTP_USER_AGENT="Mozilla/5.0 (Outlook)")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "image/gif"
    assert response.content == TRANSPARENT_GIF
    assert len(response.content) == 43
    assert response["Cache-Control"] == NO_CACHE
    assert response["Pragma"] == "no-cache"
    assert "Set-Cookie" not in response
    event = EmailEvent.objects.get(email=email)
    assert event.type == EmailEvent.Type.OPENED
    assert event.recipient.address == email.recipient
    assert event.payload == {"user_agent": "Mozilla/5.0 (Outlook)"}
    email.refresh_from_db()
    assert email.status == Status.OPENED
    assert before <= email.opened_at <= timezone.now()
    assert email.recipients.get(kind="to").status == Status.OPENED


def test_a_second_open_is_recorded_but_opened_at_stays_the_first(client):
    email = EmailFactory()
    client.get(pixel_path(email.id))
    first = Email.objects.get(id=email.id).opened_at

    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        response = client.get(pixel_path(email.id))

    assert response.status_code == HTTPStatus.OK
    assert EmailEvent.objects.filter(email=email, type="opened").count() == 2
    assert Email.objects.get(id=email.id).opened_at == first


def test_an_open_never_lowers_a_bounce(client):
    email = EmailFactory(status=Status.BOUNCED, error_code="Hard bounce")

    client.get(pixel_path(email.id))

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.BOUNCED, "Hard bounce")
    assert email.opened_at is not None


@pytest.mark.parametrize(
    "token",
    [
        "1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # a made-up signature
        "1",  # no signature
        "not-a-token",
        "",
    ],
)
def test_a_forged_token_gets_404_and_records_nothing(client, token):
    email = EmailFactory(id=1)

    response = client.get(f"/t/o/{token}.gif")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert not EmailEvent.objects.exists()
    assert Email.objects.get(id=email.id).status == Status.UNSENT


def test_a_token_with_another_emails_id_gets_404(client):
    mine, other = EmailFactory(), EmailFactory()
    _, signature = open_token(email_id=mine.id).split(".")
    tampered = f"{signing.b62_encode(other.id)}.{signature}"

    response = client.get(f"/t/o/{tampered}.gif")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert not EmailEvent.objects.exists()


def test_a_token_signed_for_another_purpose_gets_404(client):
    email = EmailFactory()
    # Same key, another salt: e.g. a value some other feature signs for users.
    other = signing.Signer(sep=".", algorithm="sha256").sign(signing.b62_encode(email.id))

    response = client.get(f"/t/o/{other}.gif")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert not EmailEvent.objects.exists()


def test_a_token_signed_with_another_secret_key_gets_404(client, settings):
    email = EmailFactory()
    settings.SECRET_KEY = "another-secret-key-entirely"
    token = open_token(email_id=email.id)
    settings.SECRET_KEY = "the-real-secret-key-of-the-service"

    response = client.get(f"/t/o/{token}.gif")

    assert response.status_code == HTTPStatus.NOT_FOUND


def test_a_head_request_returns_the_gif_headers_but_is_not_an_open(client):
    email = EmailFactory()

    response = client.head(pixel_path(email.id))

    assert response.status_code == HTTPStatus.OK
    assert response["Cache-Control"] == NO_CACHE
    assert not EmailEvent.objects.exists()


def test_a_valid_token_of_a_deleted_email_still_gets_the_image(client):
    email = EmailFactory()
    path = pixel_path(email.id)
    email.delete()

    response = client.get(path)

    assert response.status_code == HTTPStatus.OK
    assert response.content == TRANSPARENT_GIF
    assert not EmailEvent.objects.exists()


def test_opens_beyond_the_cap_are_not_recorded(client):
    email = EmailFactory()

    for _ in range(MAX_OPEN_EVENTS + 3):
        assert client.get(pixel_path(email.id)).status_code == HTTPStatus.OK

    assert EmailEvent.objects.filter(email=email).count() == MAX_OPEN_EVENTS


def test_the_pixel_of_a_sent_email_opens_it(client, smtp_peer, settings):
    settings.PUBLIC_BASE_URL = "https://postman.example.gov.sg"
    email = EmailFactory()
    deliver_email(email.id)
    html = smtp_peer.received[0].message.get_body(preferencelist=("html",)).get_content()
    url = re.search(r'<img src="([^"]+)"', html)[1]

    response = client.get(url.removeprefix("https://postman.example.gov.sg"))

    assert response.status_code == HTTPStatus.OK
    email.refresh_from_db()
    assert email.status == Status.OPENED
    assert email.accepted_at <= email.opened_at
