"""GET /v1/transactional/email/{id} and GET /v1/transactional/email (SPEC §4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from emails.models import Email, RateLimitWindow
from emails.selectors import EmailListFilters, email_get, email_list
from tests.factories import EmailFactory

LIST = "/v1/transactional/email"
T0 = datetime(2024, 5, 1, 2, 3, 4, 567000, tzinfo=UTC)
STATUS_CHOICES = "[UNSENT, ACCEPTED, SENT, DELIVERED, OPENED, BOUNCED, COMPLAINT]"
SORT_CHOICES = "[created_at, +created_at, -created_at, updated_at, +updated_at, -updated_at]"


def detail(email_id) -> str:
    return f"/v1/transactional/email/{email_id}"


def error(response):
    return response.status_code, response.json()


def validation(message: str):
    return HTTPStatus.BAD_REQUEST, {"code": "api_validation", "message": message}


def ids(response) -> list[str]:
    assert response.status_code == HTTPStatus.OK, response.json()
    return [email["id"] for email in response.json()["data"]]


def make_emails(agency, count: int, *, step=timedelta(minutes=1), **fields) -> list[Email]:
    """``count`` emails created ``step`` apart from T0, oldest first."""
    return [
        EmailFactory(agency=agency, created_at=T0 + i * step, updated_at=T0 + i * step, **fields)
        for i in range(count)
    ]


def as_ids(emails) -> list[str]:
    return [str(email.pk) for email in emails]


# --- GET /v1/transactional/email/{id} ----------------------------------------------------------


def test_it_returns_the_email_object(api):
    email = EmailFactory(
        agency=api.agency,
        sender="Housing Board <alerts@notify.hdb.gov.sg>",
        recipient="citizen@example.com",
        params={
            "subject": "Your OTP",
            "body": "<p>OTP <b>123456</b></p>",
            "from": "Housing Board <alerts@notify.hdb.gov.sg>",
            "reply_to": "help@hdb.gov.sg",
        },
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        attachments_metadata=[{"fileName": "a.pdf", "fileSize": 3, "hash": "0" * 32}],
        classification="URGENT",
        tag="otp",
        status="BOUNCED",
        error_code="Hard bounce",
        error_sub_type="General",
        created_at=T0,
        updated_at=T0 + timedelta(seconds=5),
        accepted_at=T0 + timedelta(seconds=1),
        sent_at=T0 + timedelta(seconds=2),
        delivered_at=None,
        opened_at=None,
    )

    response = api.client.get(detail(email.pk))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "id": str(email.pk),
        "from": "Housing Board <alerts@notify.hdb.gov.sg>",
        "recipient": "citizen@example.com",
        "params": {
            "subject": "Your OTP",
            "body": "<p>OTP <b>123456</b></p>",
            "from": "Housing Board <alerts@notify.hdb.gov.sg>",
            "reply_to": "help@hdb.gov.sg",
        },
        "attachments_metadata": [{"fileName": "a.pdf", "fileSize": 3, "hash": "0" * 32}],
        "status": "BOUNCED",
        "error_code": "Hard bounce",
        "error_sub_type": "General",
        "created_at": "2024-05-01T02:03:04.567Z",
        "updated_at": "2024-05-01T02:03:09.567Z",
        "accepted_at": "2024-05-01T02:03:05.567Z",
        "sent_at": "2024-05-01T02:03:06.567Z",
        "delivered_at": None,
        "opened_at": None,
        "classification": "URGENT",
        "tag": "otp",
        "cc": ["cc@example.com"],
        "bcc": ["bcc@example.com"],
        "mode": "live",
    }


def test_a_teammate_reads_the_agencys_email(api, teammate_api):
    email = EmailFactory(agency=api.agency)

    response = teammate_api.client.get(detail(email.pk))

    assert response.status_code == HTTPStatus.OK
    assert response.json()["id"] == str(email.pk)


def test_an_outsider_gets_404(api, outsider_api):
    email = EmailFactory(agency=api.agency)

    response = outsider_api.client.get(detail(email.pk))

    assert error(response) == (
        HTTPStatus.NOT_FOUND,
        {"code": "not_found", "message": f"Email message with ID {email.pk} not found."},
    )


def test_a_missing_email_is_404(api):
    response = api.client.get(detail(424242))

    assert error(response) == (
        HTTPStatus.NOT_FOUND,
        {"code": "not_found", "message": "Email message with ID 424242 not found."},
    )


@pytest.mark.parametrize("email_id", ["abc", "12abc", "0x10", "1e", "%20", "\uff11\uff12"])
def test_a_non_numeric_id_is_400(api, email_id):
    response = api.client.get(detail(email_id))

    assert error(response) == validation('"emailId" must be a number')


@pytest.mark.parametrize(
    "email_id",
    [
        "-1",
        "0",
        "1.5",
        str(2**63 - 1),  # the largest bigint
        str(2**63),  # one past it: must not reach the database as an overflow
        "9" * 40,
        "1e30",
    ],
)
def test_numbers_no_email_can_have_are_404_not_500(api, email_id):
    response = api.client.get(detail(email_id))

    assert error(response) == (
        HTTPStatus.NOT_FOUND,
        {"code": "not_found", "message": f"Email message with ID {email_id} not found."},
    )


def test_leading_zeros_still_find_the_email(api):
    email = EmailFactory(agency=api.agency)

    response = api.client.get(detail(f"000{email.pk}"))

    assert response.status_code == HTTPStatus.OK
    assert response.json()["id"] == str(email.pk)


def test_reading_an_email_costs_two_queries(api, django_assert_num_queries):
    email = EmailFactory(agency=api.agency)
    type(api.key).objects.filter(pk=api.key.pk).update(last_used_at=timezone.now())

    # The key (with its agency and owner), then the email.
    with django_assert_num_queries(2):
        response = api.client.get(detail(email.pk))

    assert response.status_code == HTTPStatus.OK


def test_reading_needs_a_key(client, db):
    response = client.get(detail(1))

    assert error(response) == (
        HTTPStatus.UNAUTHORIZED,
        {
            "code": "unauthenticated",
            "message": "Unauthenticated request. Please try again with correct authentication",
        },
    )


def test_a_key_without_the_read_scope_may_not_read(owner, keyed_client_for):
    sender_only = keyed_client_for(owner, scopes=["send"])
    email = EmailFactory(agency=owner.agency)

    for path in (detail(email.pk), LIST):
        response = sender_only.client.get(path)

        assert error(response) == (
            HTTPStatus.FORBIDDEN,
            {"code": "unauthorized", "message": "This API key may not read emails"},
        )


def test_reads_are_not_rate_limited(api):
    api.agency.rate_limit_per_second = 1
    api.agency.save()
    email = EmailFactory(agency=api.agency)

    responses = [api.client.get(path) for path in [detail(email.pk), LIST] * 3]

    assert [r.status_code for r in responses] == [HTTPStatus.OK] * 6
    assert not any(r.has_header("RateLimit-Limit") for r in responses)
    assert not RateLimitWindow.objects.exists()


# --- GET /v1/transactional/email: results ------------------------------------------------------


def test_it_lists_the_newest_ten_by_default(api):
    emails = make_emails(api.agency, 12)

    response = api.client.get(LIST)

    assert ids(response) == as_ids(reversed(emails[2:]))
    assert response.json()["has_more"] is True
    assert response.json()["data"][0]["params"] == emails[-1].params


def test_an_empty_list(api):
    response = api.client.get(LIST)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"has_more": False, "data": []}


def test_an_outsider_lists_nothing_of_another_agency(api, outsider_api):
    make_emails(api.agency, 3)

    response = outsider_api.client.get(LIST)

    assert response.json() == {"has_more": False, "data": []}


def test_a_teammate_lists_the_agencys_emails(api, teammate_api, outsider_api):
    emails = make_emails(api.agency, 2)
    make_emails(outsider_api.agency, 2)

    response = teammate_api.client.get(LIST)

    assert ids(response) == as_ids(reversed(emails))


@pytest.mark.parametrize(
    ("query", "expected", "has_more"),
    [
        ("limit=2", [4, 3], True),
        ("limit=2&offset=2", [2, 1], True),
        ("limit=2&offset=3", [1, 0], False),  # exactly limit rows left
        ("limit=2&offset=4", [0], False),
        ("limit=2&offset=5", [], False),
        ("limit=5", [4, 3, 2, 1, 0], False),  # exactly limit rows in all
        ("limit=1000&offset=0", [4, 3, 2, 1, 0], False),
        ("limit=4", [4, 3, 2, 1], True),
    ],
)
def test_pagination_and_an_exact_has_more(api, query, expected, has_more):
    emails = make_emails(api.agency, 5)

    response = api.client.get(f"{LIST}?{query}")

    assert ids(response) == [str(emails[i].pk) for i in expected]
    assert response.json()["has_more"] is has_more


def test_it_filters_by_exact_tag(api):
    otp = make_emails(api.agency, 2, tag="otp")
    make_emails(api.agency, 1, tag="OTP")
    make_emails(api.agency, 1, tag="otp-reset")
    make_emails(api.agency, 1, tag=None)

    response = api.client.get(f"{LIST}?tag=otp")

    assert ids(response) == as_ids(reversed(otp))


@pytest.mark.parametrize("value", ["delivered", "DELIVERED", "Delivered"])
def test_it_filters_by_status_case_insensitively(api, value):
    delivered = make_emails(api.agency, 2, status="DELIVERED")
    make_emails(api.agency, 2, status="UNSENT")

    response = api.client.get(f"{LIST}?status={value}")

    assert ids(response) == as_ids(reversed(delivered))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("created_at[gt]=2024-05-01T02:05:04.567Z", [3, 4]),
        ("created_at[gte]=2024-05-01T02:05:04.567Z", [2, 3, 4]),
        ("created_at[lt]=2024-05-01T02:05:04.567Z", [0, 1]),
        ("created_at[lte]=2024-05-01T02:05:04.567Z", [0, 1, 2]),
        # All operators given apply together.
        (
            "created_at[gt]=2024-05-01T02:03:04.567Z&created_at[lte]=2024-05-01T02:06:04.567Z",
            [1, 2, 3],
        ),
        (
            "created_at[gte]=2024-05-01T02:04:04.567Z&created_at[lt]=2024-05-01T02:06:04.567Z",
            [1, 2],
        ),
        # Offsets, sent encoded (%2B) or raw (a raw "+" arrives as a space).
        ("created_at[gte]=2024-05-01T10:05:04.567%2B08:00", [2, 3, 4]),
        ("created_at[gte]=2024-05-01T10:05:04.567+08:00", [2, 3, 4]),
        ("created_at[gte]=2024-05-01T02:05:04.567-00:00", [2, 3, 4]),
        # No offset means UTC; a date alone is its midnight.
        ("created_at[gte]=2024-05-01T02:05:04.567", [2, 3, 4]),
        ("created_at[lt]=2024-05-01", []),
        ("created_at[gte]=2024-05-01", [0, 1, 2, 3, 4]),
        ("created_at[gt]=2024-05-02", []),
    ],
)
def test_it_filters_by_creation_time(api, query, expected):
    emails = make_emails(api.agency, 5)

    response = api.client.get(f"{LIST}?{query}&sort_by=%2Bcreated_at")

    assert ids(response) == [str(emails[i].pk) for i in expected]


def test_filters_combine(api):
    wanted = EmailFactory(agency=api.agency, tag="otp", status="SENT", created_at=T0)
    EmailFactory(agency=api.agency, tag="otp", status="SENT", created_at=T0 - timedelta(days=1))
    EmailFactory(agency=api.agency, tag="otp", status="UNSENT", created_at=T0)
    EmailFactory(agency=api.agency, tag="news", status="SENT", created_at=T0)

    response = api.client.get(f"{LIST}?tag=otp&status=sent&created_at[gte]=2024-05-01")

    assert ids(response) == [str(wanted.pk)]


@pytest.mark.parametrize(
    ("sort_by", "ascending"),
    [
        ("%2Bcreated_at", True),
        ("+created_at", True),  # a raw "+" decodes to a space, read as "+"
        ("%20created_at", True),
        ("-created_at", False),
        ("created_at", False),
        (None, False),
    ],
)
def test_it_sorts_by_creation_time(api, sort_by, ascending):
    emails = make_emails(api.agency, 3)
    emails[0].updated_at = T0 + timedelta(days=1)  # updated_at must not matter here
    emails[0].save()

    query = f"?sort_by={sort_by}" if sort_by else ""
    response = api.client.get(f"{LIST}{query}")

    assert ids(response) == as_ids(emails if ascending else reversed(emails))


@pytest.mark.parametrize(
    ("sort_by", "ascending"), [("%2Bupdated_at", True), ("-updated_at", False)]
)
def test_it_sorts_by_update_time(api, sort_by, ascending):
    # Created in one order, updated in the reverse order.
    emails = make_emails(api.agency, 3)
    for i, email in enumerate(emails):
        email.updated_at = T0 + timedelta(days=1, minutes=-i)
        email.save()
    by_update = list(reversed(emails))

    response = api.client.get(f"{LIST}?sort_by={sort_by}")

    assert ids(response) == as_ids(by_update if ascending else reversed(by_update))


@pytest.mark.parametrize(
    ("sort_by", "ascending"),
    [
        ("%2Bcreated_at", True),
        ("-created_at", False),
        ("%2Bupdated_at", True),
        ("updated_at", False),
    ],
)
def test_ties_are_broken_by_id_in_the_same_direction(api, sort_by, ascending):
    emails = make_emails(api.agency, 4, step=timedelta(0))
    expected = as_ids(emails if ascending else reversed(emails))

    first = api.client.get(f"{LIST}?sort_by={sort_by}&limit=2")
    second = api.client.get(f"{LIST}?sort_by={sort_by}&limit=2&offset=2")

    assert ids(first) + ids(second) == expected


@pytest.mark.parametrize(("value", "excluded"), [("true", True), ("TRUE", True), ("false", False)])
def test_exclude_params_omits_params(api, value, excluded):
    make_emails(api.agency, 2)

    response = api.client.get(f"{LIST}?exclude_params={value}")

    data = response.json()["data"]
    assert len(data) == 2
    assert all(("params" in email) is not excluded for email in data)
    assert all("recipient" in email and "status" in email for email in data)


def test_listing_costs_two_queries(api, django_assert_num_queries):
    make_emails(api.agency, 20)
    type(api.key).objects.filter(pk=api.key.pk).update(last_used_at=timezone.now())

    with django_assert_num_queries(2):
        response = api.client.get(f"{LIST}?limit=20")

    assert len(response.json()["data"]) == 20


# --- GET /v1/transactional/email: validation ---------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=abc", '"limit" must be a number'),
        ("limit=", '"limit" must be a number'),
        ("limit=1.5", '"limit" must be an integer'),
        ("limit=0", '"limit" must be greater than or equal to 1'),
        ("limit=-3", '"limit" must be greater than or equal to 1'),
        ("limit=1001", '"limit" must be less than or equal to 1000'),
        ("limit=1e20", '"limit" must be a safe number'),
        ("offset=x", '"offset" must be a number'),
        ("offset=-1", '"offset" must be greater than or equal to 0'),
        ("offset=0.5", '"offset" must be an integer'),
        ("offset=99999999999999999999", '"offset" must be a safe number'),
        ("tag=", '"tag" is not allowed to be empty'),
        ("tag=" + "x" * 256, '"tag" length must be less than or equal to 255 characters long'),
        ("status=LOST", f'"status" must be one of {STATUS_CHOICES}'),
        ("status=", f'"status" must be one of {STATUS_CHOICES}'),
        ("created_at[gt]=yesterday", '"created_at.gt" must be in ISO 8601 date format'),
        ("created_at[gte]=2024-13-01", '"created_at.gte" must be in ISO 8601 date format'),
        ("created_at[lt]=", '"created_at.lt" must be in ISO 8601 date format'),
        ("created_at[lte]=1714528984", '"created_at.lte" must be in ISO 8601 date format'),
        # Valid ISO-8601 that leaves the representable range once moved to UTC.
        (
            "created_at[lt]=0001-01-01T00:00:00%2B01:00",
            '"created_at.lt" must be in ISO 8601 date format',
        ),
        ("sort_by=name", f'"sort_by" must be one of {SORT_CHOICES}'),
        ("sort_by=", f'"sort_by" must be one of {SORT_CHOICES}'),
        ("sort_by=%2B%2Bcreated_at", f'"sort_by" must be one of {SORT_CHOICES}'),
        ("sort_by=CREATED_AT", f'"sort_by" must be one of {SORT_CHOICES}'),
        ("exclude_params=yes", '"exclude_params" must be a boolean'),
        ("exclude_params=1", '"exclude_params" must be a boolean'),
        ("exclude_params=", '"exclude_params" must be a boolean'),
        ("foo=1", '"foo" is not allowed'),
        ("page=2", '"page" is not allowed'),
        ("created_at=2024-05-01", '"created_at" must be of type object'),
        ("created_at[eq]=2024-05-01", '"created_at.eq" is not allowed'),
        ("limit=1&limit=2", '"limit" must not be repeated'),
        ("tag=a&tag=a", '"tag" must not be repeated'),
        (
            "created_at[gt]=2024-05-01&created_at[gt]=2024-05-02",
            '"created_at.gt" must not be repeated',
        ),
        # Only the first error is reported: known parameters in order, then unknown ones.
        ("foo=1&offset=-1&limit=0", '"limit" must be greater than or equal to 1'),
        ("foo=1&sort_by=x", f'"sort_by" must be one of {SORT_CHOICES}'),
    ],
)
def test_it_rejects_bad_parameters(api, query, message):
    response = api.client.get(f"{LIST}?{query}")

    assert error(response) == validation(message)


@pytest.mark.parametrize(
    "query", ["limit=1", "limit=1000", "offset=0", "limit=%2010%20", "limit=1e2"]
)
def test_numbers_are_read_as_the_reference_reads_them(api, query):
    response = api.client.get(f"{LIST}?{query}")

    assert response.status_code == HTTPStatus.OK


# --- the list query uses the agency's indexes ---------------------------------------------------


AGENCY_INDEXES = (
    "email_agency_created",
    "email_agency_updated",
    "email_agency_status",
    "email_agency_tag",
)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's plan")
@pytest.mark.parametrize(
    ("filters", "indexes"),
    [
        (EmailListFilters(), ["email_agency_created"]),
        (EmailListFilters(descending=False), ["email_agency_created"]),
        (EmailListFilters(sort_field="updated_at"), ["email_agency_updated"]),
        (EmailListFilters(sort_field="updated_at", descending=False), ["email_agency_updated"]),
        # Real statistics decide between the filter's index (plus an incremental sort of
        # created_at ties by id) and the ordered scan; both start with the agency.
        (EmailListFilters(status="SENT"), AGENCY_INDEXES),
        (EmailListFilters(tag="otp", offset=20), AGENCY_INDEXES),
    ],
)
def test_the_list_query_reads_an_agency_index_in_order(api, filters, indexes):
    make_emails(api.agency, 3)
    with CaptureQueriesContext(connection) as captured:
        email_list(agency=api.agency, filters=filters)
    (query,) = captured.captured_queries

    with connection.cursor() as cursor:
        # On a table this small the planner would rightly scan and sort it; forbid both to see
        # which index delivers the rows in order.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + query["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())

    used = [index for index in indexes if f"using {index} on" in plan]
    assert used, plan
    assert re.search(rf"Index Cond: \(+agency_id = {api.agency.pk}\)", plan), plan
    assert "Sort" not in plan, plan


def test_the_selector_finds_nothing_beyond_bigint(api):
    # Guarded in the view too; the selector must not overflow for other callers either.
    assert email_get(agency=api.agency, email_id=2**70) is None
