"""``POST /v1/callback/email``: Amazon SES events through SNS, in Amazon's formats, signed by a
test key whose certificate a local https server serves."""

from __future__ import annotations

import base64
import json
from http import HTTPStatus

import pytest
from django.core.cache import cache
from django.db import OperationalError

from accounts.models import AuditEvent
from emails.delivery.mime import make_message_id
from emails.models import BlacklistEntry, Email, EmailEvent, EmailRecipient, Status, Suppression
from emails.sns import UntrustedUrl, cert_cache_key, check_url
from tests.emails.sns_peer import (
    CERT_PATH,
    SnsHttpsServer,
    SnsPki,
    notification,
    sign,
    subscription_confirmation,
)
from tests.factories import EmailFactory

pytestmark = pytest.mark.django_db

URL = "/v1/callback/email"
SECRET = "ses-callbacks:Zq8v2Lr7wP0xN4kT"
SES_MESSAGE_ID = "0100018c9a3c5b0e-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901-000000"
T = EmailEvent.Type


@pytest.fixture(scope="session")
def pki() -> SnsPki:
    return SnsPki()


@pytest.fixture
def sns(pki, tmp_path, settings):
    """The local https "SNS" the service is configured to trust, and the callback secret."""
    ca, cert, key = pki.write_tls_files(tmp_path)
    server = SnsHttpsServer(pki, cert, key)
    server.start()
    settings.SNS_CERT_HOST_PATTERN = r"^127\.0\.0\.1$"
    settings.SNS_CERT_CA_BUNDLE = str(ca)
    settings.SNS_TOPIC_ARNS = []
    settings.CALLBACK_SECRET = SECRET
    # Certificates are cached by URL, and a port can come round again (in this run, or in an
    # earlier one when the cache is Redis): never let another test's certificate answer.
    cache.delete(cert_cache_key(server.cert_url))
    yield server
    server.stop()


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def post(client, envelope: dict, auth: str | None = basic(SECRET)):
    headers = {"HTTP_X_AMZ_SNS_MESSAGE_TYPE": envelope.get("Type", "")}
    if auth is not None:
        headers["HTTP_AUTHORIZATION"] = auth
    return client.post(
        URL, data=json.dumps(envelope), content_type="text/plain; charset=UTF-8", **headers
    )


def ses_mail(email: Email, *, headers: bool = True, message_id: str = SES_MESSAGE_ID) -> dict:
    """SES's ``mail`` object for ``email``, as in event publishing with original headers."""
    destination = [r.address for r in email.recipients.order_by("id")]
    mail = {
        "timestamp": "2026-03-02T01:02:03.100Z",
        "source": "info@mail.postman.gov.sg",
        "sourceArn": "arn:aws:ses:ap-southeast-1:123456789012:identity/mail.postman.gov.sg",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": destination,
        "headersTruncated": False,
        "commonHeaders": {
            "from": ["Postman <info@mail.postman.gov.sg>"],
            "to": [email.recipient],
            # SES replaces the Message-ID of messages sent through its SMTP interface.
            "messageId": f"<{message_id}@ap-southeast-1.amazonses.com>",
            "subject": "Your OTP",
        },
        "tags": {
            "ses:configuration-set": ["postman"],
            "ses:source-ip": ["192.0.2.10"],
            "ses:from-domain": ["mail.postman.gov.sg"],
            "ses:caller-identity": ["postman-smtp"],
        },
    }
    if headers:
        mail["headers"] = [
            {"name": "Received", "value": "from worker1 (192.0.2.10) by email-smtp.amazonaws.com"},
            {"name": "From", "value": "Postman <info@mail.postman.gov.sg>"},
            {"name": "To", "value": email.recipient},
            {"name": "Subject", "value": "Your OTP"},
            {"name": "Message-ID", "value": make_message_id(email.id)},
            {"name": "X-Postman-Email-Id", "value": str(email.id)},
            {"name": "MIME-Version", "value": "1.0"},
            {"name": "Content-Type", "value": 'multipart/alternative; boundary="===1=="'},
        ]
    return mail


def send_event(email: Email, **mail_options) -> dict:
    return {"eventType": "Send", "mail": ses_mail(email, **mail_options), "send": {}}


def delivery_event(email: Email, recipients: list[str] | None = None, **mail_options) -> dict:
    return {
        "eventType": "Delivery",
        "mail": ses_mail(email, **mail_options),
        "delivery": {
            "timestamp": "2026-03-02T01:02:05.250Z",
            "processingTimeMillis": 2150,
            "recipients": recipients or [email.recipient],
            "smtpResponse": "250 2.6.0 Message received",
            "remoteMtaIp": "198.51.100.7",
            "reportingMTA": "a8-30.smtp-out.amazonses.com",
        },
    }


def bounce_event(
    email: Email, address: str, *, bounce_type: str = "Permanent", sub_type: str = "General"
) -> dict:
    return {
        "eventType": "Bounce",
        "mail": ses_mail(email),
        "bounce": {
            "feedbackId": "0100018c9a3c7a11-4c5a3b8e-8f1e-4c2a-9d37-2b4f1f0f5a10-000000",
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-03-02T01:02:06.000Z",
            "remoteMtaIp": "198.51.100.7",
            "reportingMTA": "dsn; a8-30.smtp-out.amazonses.com",
        },
    }


def complaint_event(email: Email, address: str, feedback_type: str | None = "abuse") -> dict:
    complaint = {
        "feedbackId": "0100018c9a3c9b22-2d1e0f4a-77c3-4e8b-a0e1-6f5d4c3b2a19-000000",
        "complaintSubType": None,
        "complainedRecipients": [{"emailAddress": address}],
        "timestamp": "2026-03-02T09:00:00.000Z",
        "userAgent": "Yahoo!-Mail-Feedback/2.0",
        "arrivalDate": "2026-03-02T08:59:58.000Z",
    }
    if feedback_type is not None:
        complaint["complaintFeedbackType"] = feedback_type
    return {"eventType": "Complaint", "mail": ses_mail(email), "complaint": complaint}


def open_event(email: Email) -> dict:
    return {
        "eventType": "Open",
        "mail": ses_mail(email),
        "open": {
            "ipAddress": "192.0.2.1",
            "timestamp": "2026-03-02T10:00:00.000Z",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit",
        },
    }


@pytest.fixture
def deliver(client, sns, pki):
    """Sign an SES event as SNS does and post it with the right credentials."""

    def send(message: dict, *, version: str = "1", message_id: str | None = None):
        envelope = notification(message, cert_url=sns.cert_url, message_id=message_id)
        return post(client, sign(envelope, pki.signing_key, version))

    return send


def accepted_email(**fields) -> Email:
    email = EmailFactory(status=Status.ACCEPTED, **fields)
    EmailRecipient.objects.filter(email=email).update(status=Status.ACCEPTED)
    return email


def recipient(email: Email, address: str | None = None) -> EmailRecipient:
    return EmailRecipient.objects.get(email=email, address=address or email.recipient)


# --- the SES event types --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_send_event_makes_every_recipient_sent(deliver, version):
    email = accepted_email(cc=["carol@example.com"])

    response = deliver(send_event(email), version=version)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "processed"}
    email.refresh_from_db()
    assert email.status == Status.SENT
    assert email.sent_at.isoformat() == "2026-03-02T01:02:03.100000+00:00"
    assert email.provider_message_id == SES_MESSAGE_ID
    assert recipient(email, "carol@example.com").status == Status.SENT
    assert EmailEvent.objects.filter(email=email, type=T.SENT).count() == 2


def test_a_delivery_event_delivers_the_named_recipients(deliver):
    email = accepted_email(cc=["carol@example.com"])

    deliver(delivery_event(email, recipients=["carol@example.com"]))
    response = deliver(delivery_event(email))

    assert response.status_code == HTTPStatus.OK
    email.refresh_from_db()
    assert email.status == Status.DELIVERED
    assert email.delivered_at.isoformat() == "2026-03-02T01:02:05.250000+00:00"
    assert recipient(email, "carol@example.com").status == Status.DELIVERED
    event = EmailEvent.objects.filter(email=email, type=T.DELIVERED).first()
    assert event.detail == "250 2.6.0 Message received"
    assert event.payload["delivery"]["reportingMTA"] == "a8-30.smtp-out.amazonses.com"


def test_a_permanent_bounce_is_a_hard_bounce_and_blacklists_the_address(deliver):
    email = accepted_email(recipient="gone@example.com")

    response = deliver(bounce_event(email, "gone@example.com", sub_type="NoEmail"))

    assert response.status_code == HTTPStatus.OK
    email.refresh_from_db()
    assert (email.status, email.error_code, email.error_sub_type) == (
        Status.BOUNCED,
        "Hard bounce",
        "NoEmail",
    )
    entry = BlacklistEntry.objects.get(address="gone@example.com")
    assert entry.source == BlacklistEntry.Source.HARD_BOUNCE
    assert AuditEvent.objects.filter(action="blacklist.added").count() == 1
    event = EmailEvent.objects.get(email=email)
    assert event.detail == "smtp; 550 5.1.1 user unknown"


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_a_transient_or_undetermined_bounce_is_a_soft_bounce_without_blacklist(
    deliver, bounce_type
):
    email = accepted_email()

    deliver(bounce_event(email, email.recipient, bounce_type=bounce_type, sub_type="MailboxFull"))

    email.refresh_from_db()
    assert (email.status, email.error_code, email.error_sub_type) == (
        Status.BOUNCED,
        "Soft bounce",
        "MailboxFull",
    )
    assert not BlacklistEntry.objects.exists()


def test_a_bounce_of_a_cc_bounces_that_recipient_only(deliver):
    email = accepted_email(cc=["gone@example.com"])

    deliver(bounce_event(email, "gone@example.com"))

    assert recipient(email, "gone@example.com").status == Status.BOUNCED
    assert Email.objects.get(id=email.id).status == Status.ACCEPTED
    assert BlacklistEntry.objects.filter(address="gone@example.com").exists()


def test_a_complaint_suppresses_the_address_for_the_agency_not_globally(deliver):
    email = accepted_email(recipient="angry@example.com")

    response = deliver(complaint_event(email, "angry@example.com", feedback_type="fraud"))

    assert response.status_code == HTTPStatus.OK
    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.COMPLAINT, "fraud")
    suppression = Suppression.objects.get()
    assert (suppression.agency_id, suppression.address, suppression.source) == (
        email.agency_id,
        "angry@example.com",
        Suppression.Source.COMPLAINT,
    )
    assert not BlacklistEntry.objects.exists()
    assert AuditEvent.objects.filter(action="suppression.added", agency=email.agency).exists()


def test_a_complaint_without_a_feedback_type_is_abuse(deliver):
    email = accepted_email()

    deliver(complaint_event(email, email.recipient, feedback_type=None))

    assert Email.objects.get(id=email.id).error_code == "abuse"


def test_an_open_event_opens_the_email(deliver):
    email = accepted_email()

    deliver(open_event(email))

    email.refresh_from_db()
    assert email.status == Status.OPENED
    assert email.opened_at.isoformat() == "2026-03-02T10:00:00+00:00"
    assert recipient(email).status == Status.OPENED


def test_a_reject_is_a_hard_bounce_without_blacklist(deliver):
    email = accepted_email()

    deliver({"eventType": "Reject", "mail": ses_mail(email), "reject": {"reason": "Bad content"}})

    email.refresh_from_db()
    assert (email.status, email.error_code, email.error_sub_type) == (
        Status.BOUNCED,
        "Hard bounce",
        "Rejected",
    )
    assert EmailEvent.objects.get(email=email).type == T.REJECTED
    assert not BlacklistEntry.objects.exists()


def test_a_delivery_delay_is_recorded_without_changing_the_status(deliver):
    email = accepted_email()
    delay = {
        "timestamp": "2026-03-02T01:30:00.641Z",
        "delayType": "TransientCommunicationFailure",
        "expirationTime": "2026-03-02T13:30:00.914Z",
        "delayedRecipients": [
            {
                "emailAddress": email.recipient,
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
            }
        ],
    }

    deliver({"eventType": "DeliveryDelay", "mail": ses_mail(email), "deliveryDelay": delay})

    event = EmailEvent.objects.get(email=email)
    assert event.type == T.DELAYED
    assert "TransientCommunicationFailure" in event.detail
    assert Email.objects.get(id=email.id).status == Status.ACCEPTED


def test_a_classic_bounce_notification_is_understood_too(deliver):
    email = accepted_email(recipient="gone@example.com")
    event = bounce_event(email, "gone@example.com")
    del event["eventType"]
    classic = {"notificationType": "Bounce", **event}

    deliver(classic)

    email.refresh_from_db()
    assert (email.status, email.error_code) == (Status.BOUNCED, "Hard bounce")


def test_a_click_event_is_ignored_with_200(deliver):
    email = accepted_email()
    click = {"ipAddress": "192.0.2.1", "link": "https://go.gov.sg/x", "linkTags": {}}

    response = deliver({"eventType": "Click", "mail": ses_mail(email), "click": click})

    assert (response.status_code, response.json()) == (HTTPStatus.OK, {"status": "ignored"})
    assert not EmailEvent.objects.exists()


# --- correlation ----------------------------------------------------------------------------


def test_without_headers_the_email_is_found_by_its_provider_message_id(deliver):
    email = accepted_email(provider_message_id=SES_MESSAGE_ID)

    deliver(delivery_event(email, headers=False))

    assert Email.objects.get(id=email.id).status == Status.DELIVERED


def test_without_headers_the_email_is_found_by_our_message_id(deliver):
    email = accepted_email()
    event = delivery_event(email, headers=False)
    event["mail"]["commonHeaders"]["messageId"] = make_message_id(email.id)

    deliver(event)

    email.refresh_from_db()
    assert email.status == Status.DELIVERED
    assert email.provider_message_id == SES_MESSAGE_ID


def test_a_message_id_with_a_wrong_mac_finds_nothing(deliver):
    email = accepted_email()
    event = delivery_event(email, headers=False)
    event["mail"]["commonHeaders"]["messageId"] = f"<{email.id}.0123456789abcdef@mail.gov.sg>"

    response = deliver(event)

    assert response.json() == {"status": "unknown_email"}
    assert Email.objects.get(id=email.id).status == Status.ACCEPTED


def test_an_event_for_an_unknown_email_is_acknowledged_and_ignored(deliver):
    email = accepted_email()
    event = delivery_event(email, headers=False, message_id="0100018c00000000-unknown-000000")

    response = deliver(event)

    assert (response.status_code, response.json()) == (
        HTTPStatus.OK,
        {"status": "unknown_email"},
    )
    assert not EmailEvent.objects.exists()


# --- duplicates and order -------------------------------------------------------------------


def test_a_redelivered_sns_message_changes_nothing(deliver):
    email = accepted_email(recipient="gone@example.com")
    event = bounce_event(email, "gone@example.com")
    deliver(event, message_id="5a2e7c1e-8b7f-5b0e-9c1d-2f3a4b5c6d7e")

    response = deliver(event, message_id="5a2e7c1e-8b7f-5b0e-9c1d-2f3a4b5c6d7e")

    assert (response.status_code, response.json()) == (HTTPStatus.OK, {"status": "duplicate"})
    assert EmailEvent.objects.count() == 1
    assert BlacklistEntry.objects.count() == 1
    assert AuditEvent.objects.filter(action="blacklist.added").count() == 1


def test_delivery_before_send_ends_delivered_with_both_timestamps(deliver):
    email = accepted_email()

    deliver(delivery_event(email))
    deliver(send_event(email))

    email.refresh_from_db()
    assert email.status == Status.DELIVERED
    assert email.sent_at is not None
    assert email.delivered_at is not None
    assert EmailEvent.objects.filter(email=email).count() == 2


def test_open_then_delivery_stays_opened(deliver):
    email = accepted_email()

    deliver(open_event(email))
    deliver(delivery_event(email))

    email.refresh_from_db()
    assert email.status == Status.OPENED
    assert email.delivered_at.isoformat() == "2026-03-02T01:02:05.250000+00:00"
    assert recipient(email).status == Status.OPENED


def test_a_test_mode_email_never_touches_the_blacklist_or_the_suppressions(deliver):
    email = accepted_email(mode="test", recipient="gone@example.com", cc=["angry@example.com"])

    deliver(bounce_event(email, "gone@example.com"))
    deliver(complaint_event(email, "angry@example.com"))

    assert Email.objects.get(id=email.id).status == Status.BOUNCED
    assert recipient(email, "angry@example.com").status == Status.COMPLAINT
    assert not BlacklistEntry.objects.exists()
    assert not Suppression.objects.exists()


# --- signatures and certificates ------------------------------------------------------------


def test_the_certificate_is_fetched_once_and_then_cached(deliver, sns):
    email = accepted_email()

    deliver(send_event(email))
    deliver(delivery_event(email))

    assert sns.requests == [CERT_PATH]


def test_a_tampered_message_is_refused_and_records_nothing(client, sns, pki):
    email = accepted_email()
    envelope = sign(notification(delivery_event(email), cert_url=sns.cert_url), pki.signing_key)
    forged = delivery_event(email)
    forged["eventType"] = "Complaint"
    envelope["Message"] = json.dumps(forged)

    response = post(client, envelope)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["code"] == "invalid_signature"
    assert not EmailEvent.objects.exists()


def test_a_message_signed_by_another_key_is_refused(client, sns, pki):
    email = accepted_email()
    envelope = sign(notification(delivery_event(email), cert_url=sns.cert_url), pki.other_key)

    response = post(client, envelope)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not EmailEvent.objects.exists()


def test_a_sha1_signature_claimed_as_version_2_is_refused(client, sns, pki):
    email = accepted_email()
    envelope = sign(notification(send_event(email), cert_url=sns.cert_url), pki.signing_key, "1")
    envelope["SignatureVersion"] = "2"

    assert post(client, envelope).status_code == HTTPStatus.FORBIDDEN


def test_an_expired_signing_certificate_is_refused(client, sns, pki):
    sns.serve(pki.expired_cert_pem)
    email = accepted_email()
    envelope = sign(notification(send_event(email), cert_url=sns.cert_url), pki.signing_key)

    assert post(client, envelope).status_code == HTTPStatus.FORBIDDEN
    assert not EmailEvent.objects.exists()


@pytest.mark.parametrize(
    "cert_url",
    [
        # The same server, by a name the allowlist does not match.
        "https://localhost:{port}" + CERT_PATH,
        # Plain http, even on the allowlisted host.
        "http://127.0.0.1:{port}" + CERT_PATH,
        # userinfo dressed as the allowlisted host: the connection would go to localhost.
        "https://127.0.0.1@localhost:{port}" + CERT_PATH,
    ],
)
def test_a_certificate_url_off_the_allowlist_is_never_fetched(client, sns, pki, cert_url):
    email = accepted_email()
    port = sns.base_url.rsplit(":", 1)[1]
    envelope = notification(send_event(email), cert_url=cert_url.format(port=port))

    response = post(client, sign(envelope, pki.signing_key))

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert sns.requests == []
    assert not EmailEvent.objects.exists()


def test_the_default_allowlist_is_amazons_sns_hosts(settings):
    settings.SNS_CERT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
    check_url("https://sns.ap-southeast-1.amazonaws.com/SimpleNotificationService-a.pem")
    check_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem")
    for url in (
        "https://sns.ap-southeast-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "https://s3.amazonaws.com/x.pem",
    ):
        with pytest.raises(UntrustedUrl):
            check_url(url)


def test_an_unreachable_certificate_asks_sns_to_retry(client, sns, pki):
    email = accepted_email()
    envelope = notification(send_event(email), cert_url=sns.cert_url)
    sns.stop()

    response = post(client, sign(envelope, pki.signing_key))

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert not EmailEvent.objects.exists()


def test_a_topic_outside_the_allowlist_is_refused(deliver, settings):
    settings.SNS_TOPIC_ARNS = ["arn:aws:sns:ap-southeast-1:123456789012:another-topic"]
    email = accepted_email()

    response = deliver(send_event(email))

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["code"] == "unauthorized"
    assert not EmailEvent.objects.exists()


def test_an_authentic_message_that_is_not_an_ses_event_is_acknowledged(client, sns, pki):
    envelope = notification({}, cert_url=sns.cert_url)
    envelope["Message"] = "Hello from a topic that carries something else"

    response = post(client, sign(envelope, pki.signing_key))

    assert (response.status_code, response.json()) == (HTTPStatus.OK, {"status": "ignored"})


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"Type": "Notification"}'])
def test_a_body_that_is_not_an_sns_message_is_a_bad_request(client, sns, body):
    response = client.post(
        URL, data=body, content_type="text/plain", HTTP_AUTHORIZATION=basic(SECRET)
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert sns.requests == []


# --- subscription confirmation --------------------------------------------------------------


def test_a_signed_subscription_confirmation_is_confirmed_through_its_subscribe_url(
    client, sns, pki
):
    envelope = sign(subscription_confirmation(cert_url=sns.cert_url), pki.signing_key)

    response = post(client, envelope)

    assert response.status_code == HTTPStatus.OK
    assert sns.requests[0] == CERT_PATH
    assert sns.requests[1].startswith("/?Action=ConfirmSubscription&TopicArn=")
    assert sns.requests[1].endswith(envelope["Token"])


def test_an_unsigned_subscription_confirmation_is_refused_and_nothing_is_fetched(client, sns):
    envelope = subscription_confirmation(cert_url=sns.cert_url)

    response = post(client, envelope)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert sns.requests == []


def test_a_forged_subscription_confirmation_never_visits_its_subscribe_url(client, sns, pki):
    envelope = sign(subscription_confirmation(cert_url=sns.cert_url), pki.other_key)

    response = post(client, envelope)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert sns.requests == [CERT_PATH]  # to check the signature; never the SubscribeURL


def test_a_signed_confirmation_with_a_subscribe_url_off_the_allowlist_is_refused(client, sns, pki):
    port = sns.base_url.rsplit(":", 1)[1]
    envelope = subscription_confirmation(
        cert_url=sns.cert_url, subscribe_host=f"https://localhost:{port}"
    )

    response = post(client, sign(envelope, pki.signing_key))

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert sns.requests == [CERT_PATH]


# --- Basic auth -----------------------------------------------------------------------------


def test_without_credentials_it_asks_for_basic_auth(client, sns, pki):
    email = accepted_email()
    envelope = sign(notification(send_event(email), cert_url=sns.cert_url), pki.signing_key)

    response = post(client, envelope, auth=None)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"] == 'Basic realm="callbacks"'
    assert sns.requests == []
    assert not EmailEvent.objects.exists()


@pytest.mark.parametrize(
    "auth",
    [
        basic("ses-callbacks:wrong"),
        basic("ses-callbacks"),
        basic(SECRET + "x"),
        "Basic !!!not-base64!!!",
    ],
)
def test_wrong_credentials_are_forbidden(client, sns, pki, auth):
    email = accepted_email()
    envelope = sign(notification(send_event(email), cert_url=sns.cert_url), pki.signing_key)

    response = post(client, envelope, auth=auth)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert sns.requests == []
    assert not EmailEvent.objects.exists()


def test_with_no_callback_secret_configured_every_callback_is_refused(
    client, sns, pki, settings, caplog
):
    settings.CALLBACK_SECRET = ""
    email = accepted_email()
    envelope = sign(notification(send_event(email), cert_url=sns.cert_url), pki.signing_key)

    response = post(client, envelope, auth=basic(":"))

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "CALLBACK_SECRET is not set" in caplog.text
    assert not EmailEvent.objects.exists()


def test_get_is_not_allowed(client, sns):
    response = client.get(URL, HTTP_AUTHORIZATION=basic(SECRET))

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response["Allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"


def test_a_body_over_the_limit_is_refused_before_anything_is_parsed(client, sns, monkeypatch):
    monkeypatch.setattr("emails.api.callbacks.MAX_BODY_BYTES", 100)
    envelope = {"Type": "Notification", "Message": "x" * 200}

    response = post(client, envelope)

    assert response.status_code == 400
    assert response.json() == {"code": "malformed", "message": "Request body too large"}


def test_the_database_unavailable_is_503_so_that_sns_retries(deliver, monkeypatch):
    email = accepted_email()

    def unavailable(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("emails.api.callbacks.sns_message_handle", unavailable)

    response = deliver(delivery_event(email))

    assert response.status_code == 503
    assert response.json() == {"code": "unavailable", "message": "Try again later"}
