from __future__ import annotations

import logging
import re
from datetime import timedelta
from http import HTTPStatus

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from accounts import login as login_rules
from accounts.login import (
    CODE_ALPHABET,
    INVALID_CODE,
    LOGIN_AGENCY_NAME,
    LOGIN_CODE_TAG,
    TOO_MANY_ATTEMPTS,
    TOO_MANY_FOR_ADDRESS,
    TOO_MANY_FOR_IP,
)
from accounts.models import Agency, AuditEvent, LoginCode, User
from emails.models import Email
from tests.factories import AgencyFactory, UserFactory

pytestmark = pytest.mark.django_db

CODE_RE = re.compile(r"<b>([A-Z0-9]{6})</b>")


def request_code(client: Client, email: str) -> object:
    return client.post("/login", {"email": email})


def sent_code(email: str) -> str:
    """The code of the newest login email to ``email``, read from the outbox (the Email row)."""
    message = Email.objects.filter(recipient=email.lower(), tag=LOGIN_CODE_TAG).latest("id")
    return CODE_RE.search(message.html)[1]


def log_in(client: Client, email: str) -> object:
    request_code(client, email)
    return client.post("/login/code", {"code": sent_code(email)})


def test_it_sends_a_hashed_code_by_email(client):
    response = request_code(client, "alice@hdb.gov.sg")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/login/code"
    row = LoginCode.objects.get()
    code = sent_code("alice@hdb.gov.sg")
    assert len(code) == 6
    assert set(code) <= set(CODE_ALPHABET)
    assert not set(code) & set("0O1IL")
    assert code not in row.code_hash
    assert row.expires_at - row.created_at == timedelta(minutes=10)
    assert row.ip_address == "127.0.0.1"
    message = Email.objects.get(tag=LOGIN_CODE_TAG)
    assert message.subject.endswith(code)
    assert message.status == "UNSENT"


def test_the_code_page_says_where_the_code_went(client):
    request_code(client, "alice@hdb.gov.sg")

    response = client.get("/login/code")

    assert response.status_code == HTTPStatus.OK
    assert b"alice@hdb.gov.sg" in response.content


def test_login_codes_are_not_sent_as_the_users_agency(client, owner, teammate):
    """An agency's members can read its emails (portal and API): a code sent as the agency
    would let a member log in as the admin."""
    request_code(client, owner.email)

    message = Email.objects.get(tag=LOGIN_CODE_TAG)
    assert message.agency != owner.agency
    assert message.agency.name == LOGIN_AGENCY_NAME
    assert not message.agency.domains.exists()
    assert not Email.objects.filter(agency=owner.agency).exists()


def test_a_new_address_becomes_the_admin_of_its_new_agency(client):
    response = log_in(client, "Alice@HDB.gov.sg")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/"
    user = User.objects.get(email="alice@hdb.gov.sg")
    assert user.role == User.Role.ADMIN
    assert user.agency.domains.get().domain == "hdb.gov.sg"
    assert client.get("/").status_code == HTTPStatus.OK
    assert AuditEvent.objects.filter(action="user.logged_in", actor=user).exists()


def test_the_second_person_of_a_domain_becomes_a_member(client, owner):
    log_in(client, "carol@hdb.gov.sg")

    carol = User.objects.get(email="carol@hdb.gov.sg")
    assert carol.agency == owner.agency
    assert carol.role == User.Role.MEMBER


def test_an_invited_user_logs_in_to_the_agency_that_invited_them(client, owner):
    vendor = UserFactory(agency=owner.agency, email="dev@tech.gov.sg", role=User.Role.MEMBER)

    log_in(client, "dev@tech.gov.sg")

    vendor.refresh_from_db()
    assert vendor.agency == owner.agency
    assert not Agency.objects.filter(domains__domain="tech.gov.sg").exists()
    assert client.get("/").context["user"] == vendor


def test_logging_in_starts_a_new_session(client):
    request_code(client, "alice@hdb.gov.sg")
    before = client.session.session_key

    client.post("/login/code", {"code": sent_code("alice@hdb.gov.sg")})

    assert client.session.session_key != before


def test_codes_are_forgiving_about_case_and_spaces(client):
    request_code(client, "alice@hdb.gov.sg")
    code = sent_code("alice@hdb.gov.sg")

    response = client.post("/login/code", {"code": f" {code[:3].lower()} {code[3:]} "})

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/"


def test_a_code_works_once(client):
    log_in(client, "alice@hdb.gov.sg")
    code = sent_code("alice@hdb.gov.sg")
    again = Client()
    session = again.session
    session["login_email"] = "alice@hdb.gov.sg"
    session.save()

    response = again.post("/login/code", {"code": code})

    assert response.status_code == HTTPStatus.OK
    assert response.context["form"].errors["code"] == [INVALID_CODE]


@pytest.mark.parametrize(
    "email",
    ["alice@gov.sg", "alice@hdb.gov.sg", "alice@mail.hdb.gov.sg"],
)
def test_gov_sg_means_the_domain_and_its_subdomains(client, email):
    response = request_code(client, email)

    assert response.status_code == HTTPStatus.FOUND
    assert LoginCode.objects.filter(email=email).exists()


@pytest.mark.parametrize(
    "email",
    ["alice@evilgov.sg", "alice@gov.sg.example.com", "alice@example.com", "not an address"],
)
def test_it_refuses_addresses_outside_signup_domains(client, email):
    response = request_code(client, email)

    assert response.status_code == HTTPStatus.OK
    assert response.context["form"].errors["email"]
    assert not LoginCode.objects.exists()
    assert not Email.objects.exists()


def test_an_exact_signup_domain_excludes_its_subdomains(client, settings):
    settings.SIGNUP_DOMAINS = ["hdb.gov.sg"]

    assert request_code(client, "alice@hdb.gov.sg").status_code == HTTPStatus.FOUND
    response = request_code(Client(), "bob@mail.hdb.gov.sg")

    assert response.status_code == HTTPStatus.OK
    assert "hdb.gov.sg addresses only" in response.context["form"].errors["email"][0]


def test_the_answer_does_not_reveal_whether_an_account_exists(owner):
    known, unknown = Client(), Client()

    known_response = request_code(known, owner.email)
    unknown_response = request_code(unknown, "nobody@hdb.gov.sg")
    known_page = known.get("/login/code").content.decode().replace(owner.email, "X")
    unknown_page = unknown.get("/login/code").content.decode().replace("nobody@hdb.gov.sg", "X")

    assert known_response["Location"] == unknown_response["Location"] == "/login/code"
    strip = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
    assert strip.sub("", known_page) == strip.sub("", unknown_page)


def test_a_disabled_account_gets_no_code_and_cannot_log_in(client, owner):
    owner.is_active = False
    owner.save()

    response = request_code(client, owner.email)

    assert response["Location"] == "/login/code"
    assert not Email.objects.filter(tag=LOGIN_CODE_TAG).exists()
    assert LoginCode.objects.filter(email=owner.email).exists()  # counted by the throttles


def test_an_inactive_agency_cannot_log_in(client, owner):
    owner.agency.is_active = False
    owner.agency.save()

    request_code(client, owner.email)

    assert not Email.objects.filter(tag=LOGIN_CODE_TAG).exists()


def test_a_code_expires_after_ten_minutes(client):
    request_code(client, "alice@hdb.gov.sg")
    code = sent_code("alice@hdb.gov.sg")

    with time_machine.travel(timezone.now() + timedelta(minutes=10, seconds=1)):
        response = client.post("/login/code", {"code": code})

    assert response.status_code == HTTPStatus.OK
    assert INVALID_CODE in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_code_still_works_just_before_it_expires(client):
    request_code(client, "alice@hdb.gov.sg")
    code = sent_code("alice@hdb.gov.sg")

    with time_machine.travel(timezone.now() + timedelta(minutes=9, seconds=50)):
        response = client.post("/login/code", {"code": code})

    assert response.status_code == HTTPStatus.FOUND


def test_four_wrong_tries_void_the_code(client):
    request_code(client, "alice@hdb.gov.sg")
    code = sent_code("alice@hdb.gov.sg")
    wrong = "".join(c for c in CODE_ALPHABET if c not in code)[:6]

    messages = [
        client.post("/login/code", {"code": wrong}).context["form"].errors["code"][0]
        for _ in range(4)
    ]
    response = client.post("/login/code", {"code": code})

    assert "3 more tries" in messages[0]
    assert "1 more try" in messages[2]
    assert messages[3] == TOO_MANY_ATTEMPTS
    assert response.context["form"].errors["code"] == [INVALID_CODE]
    assert LoginCode.objects.get().attempts == 4
    assert "_auth_user_id" not in client.session


def test_a_wrong_try_is_counted_even_though_the_request_fails(client):
    request_code(client, "alice@hdb.gov.sg")

    client.post("/login/code", {"code": "XXXXXX"})

    assert LoginCode.objects.get().attempts == 1


def test_a_new_code_can_be_asked_for_after_30_seconds(client):
    request_code(client, "alice@hdb.gov.sg")
    first = sent_code("alice@hdb.gov.sg")

    too_soon = client.post("/login/resend", follow=True)
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        later = client.post("/login/resend", follow=True)
        second = sent_code("alice@hdb.gov.sg")
        old_code = client.post("/login/code", {"code": first})

    assert "Wait" in too_soon.content.decode()
    assert "We sent a new code" in later.content.decode()
    assert LoginCode.objects.count() == 2
    # Only the newest code counts (unless both happen to be equal).
    if first != second:
        assert old_code.status_code == HTTPStatus.OK


def test_asking_again_within_30_seconds_on_the_login_page_is_refused(client):
    request_code(client, "alice@hdb.gov.sg")

    response = request_code(Client(), "alice@hdb.gov.sg")

    assert "Wait" in response.context["form"].errors["email"][0]
    assert LoginCode.objects.count() == 1


def test_an_address_gets_at_most_five_codes_an_hour(client):
    start = timezone.now()
    for i in range(5):
        with time_machine.travel(start + timedelta(seconds=31 * i)):
            assert request_code(Client(), "alice@hdb.gov.sg").status_code == HTTPStatus.FOUND

    with time_machine.travel(start + timedelta(minutes=10)):
        refused = request_code(Client(), "alice@hdb.gov.sg")
    with time_machine.travel(start + timedelta(hours=1, seconds=1)):
        accepted = request_code(Client(), "alice@hdb.gov.sg")

    assert refused.context["form"].errors["email"] == [TOO_MANY_FOR_ADDRESS]
    assert accepted.status_code == HTTPStatus.FOUND
    assert LoginCode.objects.count() == 6


def test_an_ip_address_gets_at_most_twenty_codes_an_hour(client):
    for i in range(20):
        assert request_code(client, f"user{i}@hdb.gov.sg").status_code == HTTPStatus.FOUND

    refused = request_code(client, "user20@hdb.gov.sg")
    elsewhere = Client(REMOTE_ADDR="10.1.2.3")
    accepted = request_code(elsewhere, "user20@hdb.gov.sg")

    assert refused.context["form"].errors["email"] == [TOO_MANY_FOR_IP]
    assert accepted.status_code == HTTPStatus.FOUND


def test_the_ip_comes_from_x_forwarded_for_only_when_trusted(client, settings):
    client.post("/login", {"email": "a@hdb.gov.sg"}, HTTP_X_FORWARDED_FOR="1.1.1.1, 10.0.0.9")
    settings.TRUST_X_FORWARDED_FOR = True
    client.post("/login", {"email": "b@hdb.gov.sg"}, HTTP_X_FORWARDED_FOR="1.1.1.1, 10.0.0.9")

    assert LoginCode.objects.get(email="a@hdb.gov.sg").ip_address == "127.0.0.1"
    assert LoginCode.objects.get(email="b@hdb.gov.sg").ip_address == "10.0.0.9"


def test_in_debug_the_code_is_also_logged(client, settings, caplog):
    settings.DEBUG = True

    with caplog.at_level(logging.WARNING, logger=login_rules.__name__):
        request_code(client, "alice@hdb.gov.sg")

    assert sent_code("alice@hdb.gov.sg") in caplog.text


def test_without_debug_the_code_is_not_logged(client, caplog):
    with caplog.at_level(logging.DEBUG):
        request_code(client, "alice@hdb.gov.sg")

    assert sent_code("alice@hdb.gov.sg") not in caplog.text


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/emails/?status=BOUNCED", "/emails/?status=BOUNCED"),
        ("/keys/", "/keys/"),
        ("https://evil.example.com/", "/"),
        ("//evil.example.com/", "/"),
        ("/\\evil.example.com", "/"),
        ("javascript:alert(1)", "/"),
        ("/logout", "/"),
    ],
)
def test_after_login_it_goes_to_next_but_never_elsewhere(client, next_url, expected):
    client.post("/login", {"email": "alice@hdb.gov.sg", "next": next_url})

    response = client.post("/login/code", {"code": sent_code("alice@hdb.gov.sg")})

    assert response["Location"] == expected


def test_the_login_page_carries_next_from_the_redirect(client):
    redirect = client.get("/emails/?status=BOUNCED")
    page = client.get(redirect["Location"])

    assert redirect["Location"] == "/login?next=/emails/%3Fstatus%3DBOUNCED"
    assert page.context["form"]["next"].value() == "/emails/?status=BOUNCED"


def test_the_code_page_without_a_pending_login_goes_back_to_the_login_page(client):
    assert client.get("/login/code")["Location"] == "/login"
    assert client.post("/login/resend")["Location"] == "/login"


def test_a_logged_in_user_is_sent_on_from_the_login_page(client, owner):
    client.force_login(owner)

    assert client.get("/login")["Location"] == "/"


def test_logout_is_a_post(client, owner):
    client.force_login(owner)

    assert client.get("/logout").status_code == HTTPStatus.METHOD_NOT_ALLOWED
    response = client.post("/logout")

    assert response["Location"] == "/login"
    assert client.get("/")["Location"].startswith("/login")


def test_login_forms_need_the_csrf_token():
    client = Client(enforce_csrf_checks=True)

    assert client.post("/login", {"email": "alice@hdb.gov.sg"}).status_code == 403
    assert not LoginCode.objects.exists()


def test_session_cookies_are_httponly_samesite_and_expire_in_12_hours(client, settings):
    response = log_in(client, "alice@hdb.gov.sg")

    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 12 * 60 * 60


def test_production_session_cookies_are_secure():
    from django.conf import settings

    # HTTPS_ONLY (default on when DEBUG is false) drives them; tests/test_deploy_check.py runs
    # `check --deploy` on production settings.
    assert settings.SESSION_COOKIE_SECURE == settings.HTTPS_ONLY
    assert settings.CSRF_COOKIE_SECURE == settings.HTTPS_ONLY


def test_a_user_without_an_agency_is_refused(client):
    staff = User.objects.create_user("ops@postman.gov.sg", is_staff=True)
    client.force_login(staff)

    assert client.get("/").status_code == HTTPStatus.FORBIDDEN


def test_the_login_agency_cannot_be_joined(client):
    request_code(client, "alice@hdb.gov.sg")
    login_agency = Agency.objects.get(name=LOGIN_AGENCY_NAME)

    log_in(Client(), "bob@mom.gov.sg")

    assert not User.objects.filter(agency=login_agency).exists()
    assert Agency.objects.filter(name=LOGIN_AGENCY_NAME).count() == 1


def test_an_agency_factory_user_can_log_in(client):
    agency = AgencyFactory(domain="cpf.gov.sg")
    UserFactory(agency=agency, email="zoe@cpf.gov.sg")

    assert log_in(client, "zoe@cpf.gov.sg")["Location"] == "/"
