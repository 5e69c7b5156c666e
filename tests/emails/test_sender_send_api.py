"""The send API's from rules with sender domains and addresses (SPEC §4, §7)."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.audit import Actor
from emails.api import errors
from emails.models import Email, SenderDomain
from emails.sender_selectors import from_address_standing
from emails.services.sender_domains import sender_domain_add, sender_domain_approve
from tests.factories import AgencyFactory, VerifiedSenderFactory

pytestmark = pytest.mark.django_db

SEND = "/v1/transactional/email/send"
DOMAIN = "notify.hdb.gov.sg"
INVALID_FROM = (
    "Invalid 'from' email address, which must be either the default "
    "info@mail.postman.gov.sg or an address verified for your agency."
)


def send(api, sender: str):
    return api.client.post(
        SEND,
        {"recipient": "citizen@example.com", "subject": "Hi", "body": "<p>Hi</p>", "from": sender},
        format="json",
    )


def add_domain(agency, domain: str = DOMAIN, status: str | None = None) -> SenderDomain:
    row = sender_domain_add(agency=agency, domain=domain, actor=Actor.system())
    if status is not None:
        SenderDomain.objects.filter(pk=row.pk).update(status=status)
        row.refresh_from_db()
    return row


@pytest.mark.parametrize("status", [SenderDomain.Status.VERIFIED, SenderDomain.Status.FAILING])
@pytest.mark.parametrize(
    ("sender", "stored"),
    [
        (f"HDB Alerts <Alerts@{DOMAIN.upper()}>", f"HDB Alerts <alerts@{DOMAIN}>"),
        (f"anything.at.all@{DOMAIN}", f"anything.at.all@{DOMAIN}"),
    ],
)
def test_any_address_on_a_sending_domain_is_accepted_with_any_name(api, status, sender, stored):
    add_domain(api.agency, status=status)

    response = send(api, sender)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["from"] == stored
    email = Email.objects.get()
    assert (email.sender, email.status, email.error_code) == (stored, "UNSENT", None)


@pytest.mark.parametrize("status", [SenderDomain.Status.PENDING, SenderDomain.Status.SUSPENDED])
def test_a_pending_or_suspended_domain_is_not_verified(api, status):
    add_domain(api.agency, status=status)

    response = send(api, f"alerts@{DOMAIN}")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"code": "invalid_from_address", "message": errors.FROM_NOT_VERIFIED}
    email = Email.objects.get()
    assert email.status == "UNSENT"
    assert email.error_code == f"Error 400: {errors.FROM_NOT_VERIFIED}"


@pytest.mark.parametrize("sender", [f"alerts@mail.{DOMAIN}", "alerts@example.org"])
def test_subdomains_and_other_domains_are_not_covered(api, sender):
    add_domain(api.agency, status=SenderDomain.Status.VERIFIED)

    response = send(api, sender)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"code": "invalid_from_address", "message": INVALID_FROM}
    assert Email.objects.get().error_code == f"Error 400: {INVALID_FROM}"


def test_another_agencys_verified_domain_is_refused_as_not_its_own(api):
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    add_domain(other, "alerts.mom.gov.sg", status=SenderDomain.Status.VERIFIED)

    response = send(api, "news@alerts.mom.gov.sg")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"code": "invalid_from_address", "message": INVALID_FROM}
    email = Email.objects.get()
    assert (email.status, email.error_code) == ("UNSENT", f"Error 400: {INVALID_FROM}")


def test_a_verified_address_is_accepted(api):
    VerifiedSenderFactory(agency=api.agency, address="clerk@example.org")

    response = send(api, "The Clerk <clerk@example.org>")

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["from"] == "The Clerk <clerk@example.org>"


def test_an_address_awaiting_confirmation_is_not_verified(api):
    VerifiedSenderFactory(agency=api.agency, address="clerk@example.org", verified_at=None)

    response = send(api, "clerk@example.org")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"code": "invalid_from_address", "message": INVALID_FROM}


def test_an_address_on_the_agencys_own_people_domain_gets_the_not_verified_message(api):
    response = send(api, "someone@hdb.gov.sg")

    assert response.json() == {"code": "invalid_from_address", "message": errors.FROM_NOT_VERIFIED}


def test_attachments_are_allowed_from_a_verified_domain(api, media_root):
    add_domain(api.agency, status=SenderDomain.Status.VERIFIED)

    response = api.client.post(
        SEND,
        {
            "recipient": "citizen@example.com",
            "subject": "Report",
            "body": "<p>Attached</p>",
            "from": f"reports@{DOMAIN}",
            "attachments": SimpleUploadedFile("report.txt", b"hello", "text/plain"),
        },
    )

    assert response.status_code == HTTPStatus.CREATED
    assert Email.objects.get().attachments.count() == 1


def test_the_from_check_is_one_query(agency, django_assert_num_queries):
    domain = add_domain(agency)
    sender_domain_approve(domain=domain, actor=Actor.system())

    with django_assert_num_queries(1):
        standing = from_address_standing(agency_id=agency.pk, address=f"a@{DOMAIN}")

    assert (standing.allowed, standing.own_domain) == (True, True)
    standing = from_address_standing(agency_id=agency.pk, address="a@example.org")
    assert (standing.allowed, standing.own_domain) == (False, False)
