"""Django admin for sender domains and addresses: staff approve and suspend through the
services (audited as staff), and the DKIM private key appears on no page."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from accounts.audit import Actor
from accounts.models import AuditEvent, User
from emails.models import SenderDomain, VerifiedSender
from emails.services.sender_domains import sender_domain_add
from tests.factories import AgencyFactory, VerifiedSenderFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/emails/senderdomain/"


@pytest.fixture
def staff_client(client):
    staff = User.objects.create_superuser("ops@postman.gov.sg")
    client.force_login(staff)
    client.staff = staff
    return client


@pytest.fixture
def domain(agency) -> SenderDomain:
    return sender_domain_add(agency=agency, domain="notify.hdb.gov.sg", actor=Actor.system())


def test_the_list_and_the_page_never_show_the_private_key(staff_client, domain):
    listing = staff_client.get(CHANGELIST, {"q": "notify"})
    page = staff_client.get(f"{CHANGELIST}{domain.pk}/change/")

    assert listing.status_code == page.status_code == HTTPStatus.OK
    assert "notify.hdb.gov.sg" in listing.text
    assert domain.dkim_public_key in page.text
    for response in (listing, page):
        assert domain.dkim_private_key not in response.text
        assert "dkim_private_key" not in response.text
        assert "Dkim private key" not in response.text


def test_staff_approve_a_domain(staff_client, domain):
    response = staff_client.post(
        CHANGELIST, {"action": "approve", "_selected_action": [domain.pk]}, follow=True
    )

    assert "Approved 1 domain." in response.text
    domain.refresh_from_db()
    assert domain.status == SenderDomain.Status.VERIFIED
    event = AuditEvent.objects.get(action="sender_domain.approved")
    assert (event.actor, event.actor_kind) == (staff_client.staff, AuditEvent.ActorKind.STAFF)


def test_approval_is_refused_when_another_agency_holds_the_domain(staff_client, domain):
    other = AgencyFactory(domain="mom.gov.sg")
    claim = SenderDomain.objects.create(
        agency=other,
        domain=domain.domain,
        status=SenderDomain.Status.VERIFIED,
        ownership_token="x",
        dkim_selector="pm202601",
        dkim_private_key="-",
        dkim_public_key="-",
    )

    response = staff_client.post(
        CHANGELIST, {"action": "approve", "_selected_action": [domain.pk]}, follow=True
    )

    assert "already verified by another agency" in response.text
    domain.refresh_from_db()
    assert domain.status == SenderDomain.Status.PENDING
    claim.refresh_from_db()
    assert claim.status == SenderDomain.Status.VERIFIED


def test_staff_suspend_a_domain(staff_client, domain):
    staff_client.post(CHANGELIST, {"action": "suspend", "_selected_action": [domain.pk]})

    domain.refresh_from_db()
    assert domain.status == SenderDomain.Status.SUSPENDED
    assert AuditEvent.objects.get(action="sender_domain.suspended").actor == staff_client.staff


def test_staff_approve_an_address(staff_client, agency):
    sender = VerifiedSenderFactory(agency=agency, address="clerk@example.org", verified_at=None)

    response = staff_client.post(
        "/admin/emails/verifiedsender/",
        {"action": "approve", "_selected_action": [sender.pk]},
        follow=True,
    )

    assert "Approved 1 address." in response.text
    assert VerifiedSender.objects.get().verified_at is not None
    assert AuditEvent.objects.get(action="sender.approved").actor == staff_client.staff
