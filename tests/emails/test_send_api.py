"""POST /v1/transactional/email/send: the Postman-compatible contract (SPEC §4)."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from emails.api import errors
from emails.models import Email, EmailAttachment, EmailRecipient
from tests.factories import BlacklistEntryFactory, VerifiedSenderFactory

SEND = "/v1/transactional/email/send"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 64
SENDER = "alerts@notify.hdb.gov.sg"


def payload(**overrides):
    data = {
        "recipient": "citizen@example.com",
        "subject": "Your OTP",
        "body": "<p>Your OTP is <b>123456</b></p>",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def send_json(api, **overrides):
    return api.client.post(SEND, payload(**overrides), format="json")


def error(response):
    return response.status_code, response.json()


@pytest.fixture
def verified_sender(agency):
    return VerifiedSenderFactory(agency=agency, address=SENDER)


# --- success ---------------------------------------------------------------------------------


def test_it_records_and_queues_a_valid_email(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = send_json(api, tag="otp", classification="for_action")

    assert response.status_code == HTTPStatus.CREATED
    body = response.json()
    email = Email.objects.get()
    assert body["id"] == str(email.pk)
    assert body["status"] == "UNSENT"
    assert body["error_code"] is None
    assert body["from"] == "Postman <info@mail.postman.gov.sg>"
    assert body["recipient"] == "citizen@example.com"
    assert body["params"] == {
        "subject": "Your OTP",
        "body": "<p>Your OTP is <b>123456</b></p>",
        "from": "Postman <info@mail.postman.gov.sg>",
    }
    assert body["classification"] == "FOR_ACTION"
    assert body["tag"] == "otp"
    assert body["cc"] == [] and body["bcc"] == []
    assert body["attachments_metadata"] is None
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24
    assert body["accepted_at"] is None
    assert len(callbacks) == 1
    assert email.agency == api.agency
    assert email.reply_to == "alice@hdb.gov.sg"  # the key owner's address by default
    assert list(email.recipients.values_list("kind", "address", "status")) == [
        ("to", "citizen@example.com", "UNSENT")
    ]


def test_it_lowercases_the_recipient(api):
    response = send_json(api, recipient="Citizen@Example.COM")

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["recipient"] == "citizen@example.com"


def test_it_accepts_multipart_bodies_with_repeated_cc_fields(api):
    data = payload(cc=["a@example.com", "b@example.com"], disable_tracking="true")
    response = api.client.post(SEND, data)  # the test client encodes multipart by default

    assert response.status_code == HTTPStatus.CREATED, response.json()
    email = Email.objects.get()
    assert email.cc == ["a@example.com", "b@example.com"]
    assert email.disable_tracking is True


def test_it_accepts_form_urlencoded(api):
    from urllib.parse import urlencode

    body = urlencode(
        [*payload().items(), ("bcc", '["x@example.com","y@example.com"]'), ("reply-to", "r@x.sg")]
    )
    response = api.client.post(SEND, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == HTTPStatus.CREATED, response.json()
    email = Email.objects.get()
    assert email.bcc == ["x@example.com", "y@example.com"]
    assert email.reply_to == "r@x.sg"
    assert response.json()["bcc"] == ["x@example.com", "y@example.com"]


def test_it_accepts_cc_as_a_stringified_array_in_json(api):
    response = send_json(api, cc=json.dumps(["A@example.com"]))

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["cc"] == ["a@example.com"]


def test_it_keeps_raw_params_and_stores_the_sanitised_html(api):
    body = '<p onclick="x()">Hi<script>alert(1)</script></p><a href="javascript:evil()">x</a>'
    response = send_json(api, body=body)

    assert response.status_code == HTTPStatus.CREATED
    email = Email.objects.get()
    assert email.params["body"] == body
    assert email.html == '<p>Hialert(1)</p><a rel="noopener noreferrer">x</a>'


def test_it_filters_style_properties(api):
    send_json(api, body='<span style="color: red; position: fixed; top: 0">x</span>')

    assert Email.objects.get().html == '<span style="color:red">x</span>'


def test_subject_line_breaks_cannot_inject_headers(api):
    response = send_json(api, subject="Hello\r\nBcc: victim@example.com\nX: y")

    assert response.status_code == HTTPStatus.CREATED
    assert Email.objects.get().subject == "Hello Bcc: victim@example.com X: y"


def test_reply_to_alias_is_accepted(api):
    response = api.client.post(SEND, payload(**{"reply-to": "Help@HDB.gov.sg"}), format="json")

    assert response.status_code == HTTPStatus.CREATED
    assert Email.objects.get().reply_to == "help@hdb.gov.sg"
    assert response.json()["params"]["reply_to"] == "Help@HDB.gov.sg"


def test_the_recipient_also_in_cc_is_one_envelope_recipient(api):
    response = send_json(api, cc=["citizen@example.com", "other@example.com"])

    assert response.status_code == HTTPStatus.CREATED
    assert EmailRecipient.objects.count() == 2


# --- field validation --------------------------------------------------------------------------

VALIDATION_CASES = [
    ({"recipient": None}, '"recipient" is required'),
    ({"recipient": ""}, '"recipient" is not allowed to be empty'),
    ({"recipient": 42}, '"recipient" must be a string'),
    ({"recipient": "not-an-email"}, '"recipient" must be a valid email'),
    ({"recipient": "a@localhost"}, '"recipient" must be a valid email'),
    ({"recipient": "a@[127.0.0.1]"}, '"recipient" must be a valid email'),
    ({"recipient": "ünï@example.com"}, '"recipient" must be a valid email'),
    ({"recipient": "a@b.com\r\nRCPT TO:<x@y.com>"}, '"recipient" must be a valid email'),
    ({"subject": None}, '"subject" is required'),
    ({"subject": ""}, '"subject" is not allowed to be empty'),
    ({"subject": ["a"]}, '"subject" must be a string'),
    ({"body": None}, errors.BODY_INVALID),
    ({"body": ""}, errors.BODY_INVALID),
    ({"body": 5}, errors.BODY_INVALID),
    ({"body": "é" * (512 * 1024 + 1)}, errors.BODY_INVALID),
    ({"from": "not an address"}, '"from" must be a valid email'),
    ({"from": "Evil\r\nBcc: x@y.com <a@b.com>"}, '"from" must be a valid email'),
    ({"reply_to": "nope"}, '"reply_to" must be a valid email'),
    ({"cc": "nope"}, '"cc" failed custom validation because cc must be a valid array or '
     "stringified array."),
    ({"cc": '{"a": 1}'}, '"cc" failed custom validation because cc must be a valid stringified '
     "array"),
    ({"bcc": ["ok@example.com", "bad"]}, '"bcc[1]" must be a valid email'),
    ({"cc": ["a@example.com", "A@example.com"]}, '"cc[1]" contains a duplicate value'),
    ({"classification": "SECRET"}, '"classification" must be one of [URGENT, FOR_ACTION, '
     "FOR_INFO]"),
    ({"tag": ""}, '"tag" is not allowed to be empty'),
    ({"tag": "x" * 256}, '"tag" length must be less than or equal to 255 characters long'),
    ({"tag": "a\r\nb"}, '"tag" must not contain control characters'),
    ({"disable_tracking": "maybe"}, '"disable_tracking" must be a boolean'),
    ({"replyTo": "a@b.com"}, '"replyTo" is not allowed'),
    ({"unexpected": 1}, '"unexpected" is not allowed'),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), VALIDATION_CASES)
def test_it_rejects_invalid_fields(api, overrides, message):
    response = send_json(api, **overrides)

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "api_validation", "message": message},
    )
    assert not Email.objects.exists()


def test_it_reports_only_the_first_error_in_field_order(api):
    response = send_json(api, recipient="bad", subject="", unknown=1)

    assert response.json()["message"] == '"recipient" must be a valid email'


def test_both_reply_to_spellings_with_different_values_are_refused(api):
    response = api.client.post(
        SEND, payload(reply_to="a@example.com", **{"reply-to": "b@example.com"}), format="json"
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "api_validation"


def test_a_json_array_body_is_a_validation_error(api):
    response = api.client.post(SEND, "[]", content_type="application/json")

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "api_validation", "message": '"value" must be of type object'},
    )


def test_malformed_json_is_refused(api):
    response = api.client.post(SEND, '{"recipient": ', content_type="application/json")

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "malformed", "message": "Malformed request body"},
    )


def test_a_body_over_ten_mebibytes_is_malformed(api):
    huge = json.dumps(payload(body="x" * (10 * 1024 * 1024)))
    response = api.client.post(SEND, huge, content_type="application/json")

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "malformed", "message": "Malformed request body"},
    )


def test_more_than_49_cc_and_bcc_is_too_many(api):
    cc = [f"cc{i}@example.com" for i in range(25)]
    bcc = [f"bcc{i}@example.com" for i in range(25)]
    response = send_json(api, cc=cc, bcc=bcc)

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "too_many_recipients", "message": "Maximum of 50 recipients allowed"},
    )
    assert not Email.objects.exists()


def test_49_cc_and_bcc_are_allowed(api):
    response = send_json(api, cc=[f"cc{i}@example.com" for i in range(49)])

    assert response.status_code == HTTPStatus.CREATED


# --- from address ------------------------------------------------------------------------------


def test_a_verified_sender_is_accepted_and_normalised(api, verified_sender):
    response = send_json(api, **{"from": "HDB Alerts <Alerts@Notify.HDB.gov.sg>"})

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["from"] == "HDB Alerts <alerts@notify.hdb.gov.sg>"
    assert response.json()["params"]["from"] == "HDB Alerts <Alerts@Notify.HDB.gov.sg>"


def test_display_names_with_specials_are_quoted(api, verified_sender):
    response = send_json(api, **{"from": f'"Tan, Ah Kow" <{SENDER}>'})

    assert response.json()["from"] == f'"Tan, Ah Kow" <{SENDER}>'


@pytest.mark.parametrize(
    "sender", ["donotreply@mail.postman.gov.sg", "My Agency <info@mail.postman.gov.sg>"]
)
def test_default_addresses_with_any_name_are_accepted(api, sender):
    response = send_json(api, **{"from": sender})

    assert response.status_code == HTTPStatus.CREATED


def test_an_unverified_address_of_the_agency_domain_is_not_verified(api):
    response = send_json(api, **{"from": "Someone <someone@hdb.gov.sg>"})

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "invalid_from_address", "message": errors.FROM_NOT_VERIFIED},
    )
    email = Email.objects.get()
    assert email.status == "UNSENT"
    assert email.error_code == (
        "Error 400: From Address has not been verified. Contact us to learn more."
    )


def test_another_address_is_invalid(api):
    response = send_json(api, **{"from": "spoof@gmail.com"})

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {
            "code": "invalid_from_address",
            "message": "Invalid 'from' email address, which must be either the default "
            "info@mail.postman.gov.sg or an address verified for your agency.",
        },
    )
    assert Email.objects.get().error_code.startswith("Error 400: Invalid 'from' email address")


def test_a_sender_verified_for_another_agency_is_invalid(api, outsider_api):
    VerifiedSenderFactory(agency=outsider_api.agency, address="news@mom.gov.sg")

    response = send_json(api, **{"from": "news@mom.gov.sg"})

    assert response.json()["code"] == "invalid_from_address"


# --- blacklist and sanitising ------------------------------------------------------------------


def test_a_blacklisted_recipient_is_refused_and_recorded(api, django_capture_on_commit_callbacks):
    BlacklistEntryFactory(address="citizen@example.com")

    with django_capture_on_commit_callbacks() as callbacks:
        response = send_json(api)

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "invalid_template", "message": "Recipient email is blacklisted"},
    )
    assert Email.objects.get().error_code == "Error 400: Blacklisted recipient"
    assert callbacks == []


def test_blacklisted_cc_and_bcc_are_dropped(api):
    BlacklistEntryFactory(address="bad-cc@example.com")
    BlacklistEntryFactory(address="bad-bcc@example.com")

    response = send_json(
        api, cc=["ok@example.com", "bad-cc@example.com"], bcc=["bad-bcc@example.com"]
    )

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["cc"] == ["ok@example.com"]
    assert response.json()["bcc"] == []
    dropped = EmailRecipient.objects.get(address="bad-cc@example.com")
    assert dropped.error_code == "Error 400: Blacklisted recipient"
    assert EmailRecipient.objects.get(address="ok@example.com").error_code is None


def test_the_from_check_comes_before_the_blacklist(api):
    BlacklistEntryFactory(address="citizen@example.com")

    response = send_json(api, **{"from": "spoof@gmail.com"})

    assert response.json()["code"] == "invalid_from_address"


@pytest.mark.parametrize(
    ("subject", "body"), [("<b></b>", "<p>ok</p>"), ("Fine", "<!-- only a comment -->")]
)
def test_content_empty_after_sanitising_is_refused(api, subject, body):
    response = send_json(api, subject=subject, body=body)

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "invalid_template", "message": errors.EMPTY_AFTER_SANITISING},
    )
    assert Email.objects.get().error_code == (
        "Error 400: Email subject and/or body empty after removing invalid HTML tags"
    )


# --- attachments -------------------------------------------------------------------------------


def upload(name, content, content_type="application/octet-stream"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def test_attachments_in_json_are_refused(api):
    response = send_json(api, attachments=[{"name": "a.pdf"}])

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "attachment_format", "message": "Attachments must be sent via form-data"},
    )


def test_attachments_need_a_non_default_sender(api):
    response = api.client.post(SEND, {**payload(), "attachments": upload("a.pdf", PDF)})

    assert error(response) == (
        HTTPStatus.FORBIDDEN,
        {"code": "unauthorized", "message": errors.ATTACHMENT_DEFAULT_FROM},
    )


def test_attachments_are_stored_with_metadata_and_inline_cids(api, verified_sender):
    body = "<p><img src='cid:1'></p>"
    response = api.client.post(
        SEND,
        {
            **payload(body=body),
            "from": SENDER,
            "attachments": [upload("report.pdf", PDF), upload("logo.png", PNG, "image/png")],
        },
    )

    assert response.status_code == HTTPStatus.CREATED, response.json()
    metadata = response.json()["attachments_metadata"]
    assert [m["fileName"] for m in metadata] == ["report.pdf", "logo.png"]
    assert metadata[0]["fileSize"] == len(PDF)
    assert len(metadata[0]["hash"]) == 32
    stored = list(EmailAttachment.objects.order_by("position"))
    assert [a.inline for a in stored] == [False, True]
    assert stored[1].file.read() == PNG


def test_attachment_filenames_lose_paths_and_control_characters(api, verified_sender):
    response = api.client.post(
        SEND,
        {**payload(), "from": SENDER, "attachments": upload("..\\..\\etc/re\x07po\x1frt.pdf", PDF)},
    )

    assert response.json()["attachments_metadata"][0]["fileName"] == "report.pdf"


def test_an_attachment_of_ten_mebibytes_is_too_large(api, verified_sender):
    big = upload("big.txt", b"x" * (10 * 1024 * 1024))
    response = api.client.post(SEND, {**payload(), "from": SENDER, "attachments": big})

    assert error(response) == (
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        {"code": "attachment_limit", "message": "Size of one or more attachments exceeds limit"},
    )


def test_attachments_over_ten_mebibytes_together_are_too_large(api, verified_sender):
    half = b"x" * (5 * 1024 * 1024 + 1)
    files = [upload("a.txt", half), upload("b.txt", half)]
    response = api.client.post(SEND, {**payload(), "from": SENDER, "attachments": files})

    assert error(response) == (
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        {"code": "attachment_limit", "message": "Cumulative attachment size exceeds limit"},
    )


def test_a_multipart_body_over_its_limit_is_refused_before_it_is_read(
    api, verified_sender, monkeypatch
):
    monkeypatch.setattr("emails.api.send.MAX_MULTIPART_BYTES", 1024)
    files = upload("notes.txt", b"x" * 2048)  # within every per-attachment limit
    response = api.client.post(SEND, {**payload(), "from": SENDER, "attachments": files})

    assert error(response) == (
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        {"code": "attachment_limit", "message": errors.ATTACHMENTS_TOO_LARGE},
    )
    assert not Email.objects.exists()


def test_a_multipart_body_with_too_many_fields_is_malformed(api):
    response = api.client.post(
        SEND, {**payload(), "cc": [f"c{i}@example.com" for i in range(1001)]}
    )

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "malformed", "message": errors.MALFORMED},
    )
    assert not Email.objects.exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [("virus.pdf", EXE), ("script.sh", b"#!/bin/sh\necho hi\n"), ("archive.zip", b"PK\x03\x04")],
)
def test_unsupported_file_types_are_refused_and_recorded(api, verified_sender, name, content):
    response = api.client.post(
        SEND, {**payload(), "from": SENDER, "attachments": upload(name, content)}
    )

    assert error(response) == (
        HTTPStatus.BAD_REQUEST,
        {"code": "invalid_template", "message": errors.UNSUPPORTED_FILE_TYPE},
    )
    assert Email.objects.get().error_code == "Error 400: Unsupported file type"
    assert not EmailAttachment.objects.exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [("data.CSV", b"a,b\n1,2\n"), ("photo.txt", PNG), ("notes.txt", b"plain words")],
)
def test_types_are_judged_by_magic_bytes_then_extension(api, verified_sender, name, content):
    response = api.client.post(
        SEND, {**payload(), "from": SENDER, "attachments": upload(name, content)}
    )

    assert response.status_code == HTTPStatus.CREATED, response.json()


# --- rate limit and scopes ---------------------------------------------------------------------


def test_send_responses_carry_rate_limit_headers(api):
    response = send_json(api)

    assert response["RateLimit-Limit"] == "10"
    assert int(response["RateLimit-Remaining"]) == 9
    assert int(response["RateLimit-Reset"]) >= 1
    assert response["X-RateLimit-Limit"] == "10"


def test_over_the_limit_is_refused_and_nothing_is_recorded(api):
    api.agency.rate_limit_per_second = 1
    api.agency.save()

    first = send_json(api, body="")  # invalid requests count too
    second = send_json(api)

    assert first.status_code == HTTPStatus.BAD_REQUEST
    assert error(second) == (
        HTTPStatus.TOO_MANY_REQUESTS,
        {"code": "rate_limit", "message": "Too many requests. Please try again later."},
    )
    assert int(second["Retry-After"]) >= 1
    assert second["RateLimit-Remaining"] == "0"
    assert not Email.objects.exists()


def test_a_key_without_the_send_scope_may_not_send(db, owner, keyed_client_for):
    reader = keyed_client_for(owner, scopes=["read"])

    response = send_json(reader)

    assert error(response) == (
        HTTPStatus.FORBIDDEN,
        {"code": "unauthorized", "message": "This API key may not send email"},
    )


def test_sending_requires_authentication(client, db):
    response = client.post(SEND, payload(), content_type="application/json")

    assert error(response) == (
        HTTPStatus.UNAUTHORIZED,
        {"code": "unauthenticated", "message": errors.UNAUTHENTICATED},
    )
