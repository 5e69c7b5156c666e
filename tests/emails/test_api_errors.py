"""Errors under /v1 are always ``{code, message}`` JSON (SPEC §4), authentication refuses every
kind of bad key with the same 401, and /healthz answers for load balancers."""

from __future__ import annotations

import logging
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import OperationalError
from django.utils import timezone
from rest_framework.test import APIClient

from emails import selectors
from emails.api.read import EmailListApi
from tests.factories import EmailFactory

LIST = "/v1/transactional/email"
SEND = "/v1/transactional/email/send"
UNAUTHENTICATED = {
    "code": "unauthenticated",
    "message": "Unauthenticated request. Please try again with correct authentication",
}
INTERNAL_SERVER = {"code": "internal_server", "message": "Internal Server Error."}
# A key of the right shape that was never issued.
UNKNOWN_KEY = "alice_v1_" + "A" * 43


def error(response):
    return response.status_code, response.json()


# --- /healthz -----------------------------------------------------------------------------------


def test_healthz_is_ok_when_the_database_answers(client, db):
    response = client.get("/healthz")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


class _BrokenConnection:
    def cursor(self):
        raise OperationalError("connection refused")


def test_healthz_is_503_when_the_database_does_not_answer(client, monkeypatch):
    monkeypatch.setattr("emails.views.connection", _BrokenConnection())

    response = client.get("/healthz")

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == {"status": "unavailable"}


def test_healthz_is_not_redirected_to_https(client, db, settings):
    # A load balancer probes over plain HTTP even when the service itself is HTTPS-only.
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == HTTPStatus.OK
    assert client.get(LIST).status_code == HTTPStatus.MOVED_PERMANENTLY


# --- 404 / 405 / 500 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/nothing-here", "/v1/", "/v1/transactional/email/", "/v1/transactional/email/1/extra"],
)
def test_unknown_api_paths_are_json_404(api, path):
    response = api.client.get(path)

    assert error(response) == (HTTPStatus.NOT_FOUND, {"code": "not_found", "message": "Not found."})


def test_unknown_portal_paths_stay_html(client, db):
    response = client.get("/no-such-page")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", LIST, "GET"),
        ("post", LIST, "GET"),
        ("put", "/v1/transactional/email/1", "GET"),
        ("get", SEND, "POST"),
    ],
)
def test_a_wrong_method_is_json_405(api, method, path, allowed):
    response = getattr(api.client, method)(path)

    assert error(response) == (
        HTTPStatus.METHOD_NOT_ALLOWED,
        {"code": "method_not_allowed", "message": f'Method "{method.upper()}" not allowed.'},
    )
    assert allowed in response["Allow"]


def test_an_error_inside_an_api_view_is_json_500(api, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(selectors, "email_list", broken)

    with caplog.at_level(logging.ERROR):
        response = api.client.get(LIST)

    assert error(response) == (HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_SERVER)
    assert "database on fire" not in response.content.decode()
    assert "database on fire" in caplog.text  # logged for the operator, not shown


def test_an_error_outside_drf_is_json_500_too(api, monkeypatch):
    # initialize_request runs before DRF's own error handling: Django's handler500 answers.
    def broken(self, request, *args, **kwargs):
        raise RuntimeError("middleware on fire")

    monkeypatch.setattr(EmailListApi, "initialize_request", broken)
    api.client.raise_request_exception = False

    response = api.client.get(LIST)

    assert error(response) == (HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_SERVER)


# --- authentication -----------------------------------------------------------------------------

OPERATIONS = [("get", LIST), ("get", "/v1/transactional/email/1"), ("post", SEND)]


def call(client: APIClient, method: str, path: str):
    if method == "post":
        return client.post(path, {}, format="json")
    return client.get(path)


def assert_unauthenticated(response) -> None:
    assert error(response) == (HTTPStatus.UNAUTHORIZED, UNAUTHENTICATED)
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_a_missing_authorization_header_is_401(db, method, path, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = call(APIClient(), method, path)

    assert_unauthenticated(response)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
@pytest.mark.parametrize(
    "header",
    [
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        f"Token {UNKNOWN_KEY}",
        UNKNOWN_KEY,  # no scheme at all
        "Bearer",
        "Bearer ",
        "Bearer not-a-key",
        f"Bearer {UNKNOWN_KEY}x",
        f"Bearer {UNKNOWN_KEY[:-1]}_",
        f"Bearer {UNKNOWN_KEY} {UNKNOWN_KEY}",
    ],
)
def test_a_malformed_header_is_refused_before_the_database(
    db, method, path, header, django_assert_num_queries
):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    with django_assert_num_queries(0):
        response = call(client, method, path)

    assert_unauthenticated(response)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_an_unknown_key_is_401(db, method, path, django_assert_max_num_queries):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {UNKNOWN_KEY}")

    with django_assert_max_num_queries(1):
        response = call(client, method, path)

    assert_unauthenticated(response)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_an_expired_key_is_401(api, method, path, django_assert_max_num_queries):
    api.key.valid_until = timezone.now() - timedelta(seconds=1)
    api.key.save()

    with django_assert_max_num_queries(1):
        response = call(api.client, method, path)

    assert_unauthenticated(response)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_a_revoked_key_is_401(api, method, path, django_assert_max_num_queries):
    api.key.revoked_at = timezone.now()
    api.key.save()

    with django_assert_max_num_queries(1):
        response = call(api.client, method, path)

    assert_unauthenticated(response)


def test_the_scheme_is_case_insensitive(api):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {api.plaintext}")

    assert client.get(LIST).status_code == HTTPStatus.OK


def test_authenticating_costs_one_query(api, django_assert_max_num_queries):
    email = EmailFactory(agency=api.agency)
    api.key.last_used_at = timezone.now()
    api.key.save()

    # One query to authenticate, one for the email.
    with django_assert_max_num_queries(2):
        response = api.client.get(f"/v1/transactional/email/{email.pk}")

    assert response.status_code == HTTPStatus.OK


def test_last_used_is_written_at_most_once_a_minute(api, django_assert_num_queries):
    api.client.get(LIST)
    api.key.refresh_from_db()
    first_use = api.key.last_used_at

    # Authenticate and list: no write within the minute.
    with django_assert_num_queries(2):
        api.client.get(LIST)

    api.key.refresh_from_db()
    assert first_use is not None
    assert api.key.last_used_at == first_use
