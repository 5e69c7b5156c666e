from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIRequestFactory

from accounts.models import Agency, AgencyDomain, AuditEvent, User
from apikeys.authentication import ApiKeyAuthentication
from apikeys.models import ApiKey
from apikeys.services import apikey_digest
from tests.factories import AgencyFactory, UserFactory

pytestmark = pytest.mark.django_db


def create_api_key(*args: str, **options) -> list[str]:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out, **options)
    return out.getvalue().splitlines()


def key_of(lines: list[str]) -> ApiKey:
    return ApiKey.objects.select_related("agency", "owner").get(digest=apikey_digest(lines[-1]))


def test_it_prints_a_key_on_the_last_line_that_authenticates():
    lines = create_api_key("--email", "alice@hdb.gov.sg", "--label", "Payments")

    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {lines[-1]}")
    owner, key = ApiKeyAuthentication().authenticate(request)
    assert owner.email == "alice@hdb.gov.sg"
    assert key == key_of(lines)
    assert re.fullmatch(r"alice_v1_[A-Za-z0-9]{43}", lines[-1])
    assert key.label == "Payments"
    assert key.mode == ApiKey.Mode.LIVE
    assert sorted(key.scopes) == ["read", "send"]
    assert key.last_five == lines[-1][-5:]
    # Human information comes first; the plaintext is nowhere but the last line.
    assert len(lines) > 1
    assert all(lines[-1] not in line for line in lines[:-1])


def test_it_creates_the_agency_from_the_email_domain_and_the_user_as_its_admin():
    lines = create_api_key("--email", "Alice@HDB.gov.sg")

    key = key_of(lines)
    domain = AgencyDomain.objects.get()
    assert domain.domain == "hdb.gov.sg"
    assert key.agency == domain.agency
    assert key.agency.name == "hdb.gov.sg"
    assert key.owner.email == "alice@hdb.gov.sg"
    assert key.owner.role == User.Role.ADMIN
    assert not key.owner.has_usable_password()
    assert key.contacts == ["alice@hdb.gov.sg"]
    assert key.label == "Command-line key"


def test_a_second_run_reuses_the_agency_and_user_and_adds_a_key():
    first = key_of(create_api_key("--email", "alice@hdb.gov.sg"))
    second_lines = create_api_key("--email", "alice@hdb.gov.sg")

    second = key_of(second_lines)
    assert second.pk != first.pk
    assert second.agency == first.agency
    assert second.owner == first.owner
    assert Agency.objects.count() == 1
    assert User.objects.count() == 1
    assert ApiKey.objects.count() == 2
    assert any("existing" in line for line in second_lines[:-1])


def test_a_later_user_of_the_same_domain_joins_the_agency_as_a_member():
    first = key_of(create_api_key("--email", "alice@hdb.gov.sg"))

    bob = key_of(create_api_key("--email", "bob@hdb.gov.sg")).owner

    assert bob.agency == first.agency
    assert bob.role == User.Role.MEMBER


def test_it_uses_an_existing_agency_and_user():
    agency = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    user = UserFactory(agency=agency, email="carol@mom.gov.sg", role=User.Role.MEMBER)

    key = key_of(create_api_key("--email", "carol@mom.gov.sg"))

    assert key.owner == user
    assert key.agency == agency
    assert Agency.objects.count() == 1
    user.refresh_from_db()
    assert user.role == User.Role.MEMBER


def test_a_user_invited_into_another_agency_gets_a_key_of_that_agency_and_no_new_agency():
    agency = AgencyFactory(domain="hdb.gov.sg", name="Housing Board")
    vendor = UserFactory(agency=agency, email="dev@vendor.com", role=User.Role.MEMBER)

    lines = create_api_key("--email", "dev@vendor.com")

    assert key_of(lines).owner == vendor and key_of(lines).agency == agency
    assert lines[0] == f"Agency:     Housing Board (id {agency.pk}, existing)"
    assert Agency.objects.count() == 1
    assert not AgencyDomain.objects.filter(domain="vendor.com").exists()
    assert not AuditEvent.objects.filter(action="agency.created").exists()


def test_a_user_without_an_agency_joins_the_domain_agency():
    staff = User.objects.create_user("ops@hdb.gov.sg", is_staff=True)

    key = key_of(create_api_key("--email", "ops@hdb.gov.sg"))

    staff.refresh_from_db()
    assert key.owner == staff
    assert staff.agency == key.agency
    assert staff.role == User.Role.ADMIN


@pytest.mark.parametrize(("given", "stored"), [("25", 25), ("0", 0)])
def test_rate_limit_sets_the_agencys_sends_per_second(given, stored):
    key = key_of(create_api_key("--email", "alice@hdb.gov.sg", "--rate-limit", given))

    key.agency.refresh_from_db()
    assert key.agency.rate_limit_per_second == stored


def test_without_rate_limit_the_agencys_limit_is_unchanged():
    agency = AgencyFactory(domain="hdb.gov.sg", rate_limit_per_second=3)

    create_api_key("--email", "alice@hdb.gov.sg")

    agency.refresh_from_db()
    assert agency.rate_limit_per_second == 3


def test_test_flag_creates_a_test_mode_key():
    lines = create_api_key("--email", "alice.tan@hdb.gov.sg", "--test")

    assert re.fullmatch(r"alicetan_test_v1_[A-Za-z0-9]{43}", lines[-1])
    assert key_of(lines).mode == ApiKey.Mode.TEST


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("send", ["send"]),
        ("read", ["read"]),
        (" Read , send ", ["send", "read"]),
        ("send,send", ["send"]),
    ],
)
def test_scopes_are_stored(given, stored):
    key = key_of(create_api_key("--email", "alice@hdb.gov.sg", "--scopes", given))

    assert sorted(key.scopes) == sorted(stored)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-email"], "is not a valid email address"),
        (["--email", "alice@localhost"], "is not a valid email address"),
        (["--email", "Alice <alice@hdb.gov.sg>"], "is not a valid email address"),
        (["--email", "ålice@hdb.gov.sg"], "is not a valid email address"),
        (["--email", ""], "is not a valid email address"),
        (["--email", "alice@hdb.gov.sg", "--scopes", "send,admin"], "unknown scope(s): admin"),
        (["--email", "alice@hdb.gov.sg", "--scopes", " , "], "--scopes needs at least one"),
        (["--email", "alice@hdb.gov.sg", "--rate-limit", "ten"], "invalid int value"),
        (["--email", "alice@hdb.gov.sg", "--label", "x" * 101], "--label must be"),
        (["--email", "alice@hdb.gov.sg", "--label", "  "], "--label must be"),
        (["--label", "no email"], "--email"),
    ],
)
def test_it_refuses_bad_input_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        create_api_key(*args)

    assert not Agency.objects.exists()
    assert not User.objects.exists()
    assert not ApiKey.objects.exists()


def test_it_refuses_a_negative_rate_limit():
    with pytest.raises(CommandError, match="--rate-limit must be 0"):
        create_api_key("--email", "alice@hdb.gov.sg", rate_limit=-1)

    assert not ApiKey.objects.exists()


def test_it_refuses_a_deactivated_user_and_rolls_back():
    agency = AgencyFactory(domain="hdb.gov.sg", rate_limit_per_second=10)
    UserFactory(agency=agency, email="alice@hdb.gov.sg", is_active=False)

    with pytest.raises(CommandError, match="deactivated"):
        create_api_key("--email", "alice@hdb.gov.sg", "--rate-limit", "50")

    agency.refresh_from_db()
    assert agency.rate_limit_per_second == 10
    assert not ApiKey.objects.exists()


def test_it_refuses_a_deactivated_agency():
    AgencyFactory(domain="hdb.gov.sg", name="Housing Board", is_active=False)

    with pytest.raises(CommandError, match="agency Housing Board is deactivated"):
        create_api_key("--email", "alice@hdb.gov.sg")

    assert not ApiKey.objects.exists()


def test_what_it_creates_and_changes_is_audited():
    key = key_of(create_api_key("--email", "alice@hdb.gov.sg", "--rate-limit", "20"))
    create_api_key("--email", "alice@hdb.gov.sg", "--rate-limit", "20")

    actions = list(
        AuditEvent.objects.filter(agency=key.agency).order_by("id").values_list("action", flat=True)
    )
    assert actions == [
        "agency.created",
        "member.created",
        "agency.rate_limit_changed",
        "apikey.created",
        "apikey.created",
    ]
