"""The senders pages of the portal: agency admins only, another agency's rows are 404, and the
issue's "done when" as a new user would do it."""

from __future__ import annotations

import html
import re
from http import HTTPStatus

import dkim
import pytest

from accounts.audit import Actor
from accounts.models import AuditEvent, User
from emails.models import Email, SenderDomain, VerifiedSender
from emails.services.sender_domains import sender_domain_add
from emails.tasks import deliver_email
from tests.factories import AgencyFactory, UserFactory, VerifiedSenderFactory

pytestmark = pytest.mark.django_db

DOMAIN = "alerts.hdb.gov.sg"


@pytest.fixture
def teammate(agency) -> User:
    return UserFactory(agency=agency, email="bob@hdb.gov.sg", role=User.Role.MEMBER)


@pytest.fixture
def outsider(db) -> User:
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    return UserFactory(agency=other, email="mallory@mom.gov.sg", role=User.Role.ADMIN)


@pytest.fixture
def domain(agency) -> SenderDomain:
    return sender_domain_add(agency=agency, domain=DOMAIN, actor=Actor.system())


@pytest.fixture
def address(agency) -> VerifiedSender:
    return VerifiedSenderFactory(agency=agency, address="clerk@example.org", verified_at=None)


def login(client, user: User):
    client.force_login(user)
    return client


def shown_records(page: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of the records table, as a person would copy them."""
    cells = dict(
        re.findall(r'<pre class="wrap" id="(record-\d+-(?:name|value))"[^>]*>([^<]*)</pre>', page)
    )
    count = len(cells) // 2
    return [
        (html.unescape(cells[f"record-{i}-name"]), html.unescape(cells[f"record-{i}-value"]))
        for i in range(1, count + 1)
    ]


# -- access -------------------------------------------------------------------------------------


def test_the_owner_sees_the_agencys_domains_and_addresses(client, owner, domain, address):
    response = login(client, owner).get("/senders/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "senders"
    page = response.text
    assert DOMAIN in page
    assert "clerk@example.org" in page
    assert "Awaiting confirmation" in page
    assert "Not checked yet" in page


def test_a_member_who_is_not_an_admin_is_refused(client, teammate, domain):
    client = login(client, teammate)

    assert client.get("/senders/").status_code == HTTPStatus.FORBIDDEN
    assert client.get(f"/senders/domains/{domain.pk}/").status_code == HTTPStatus.FORBIDDEN
    assert client.post(f"/senders/domains/{domain.pk}/remove").status_code == HTTPStatus.FORBIDDEN
    assert SenderDomain.objects.filter(pk=domain.pk).exists()


def test_another_admin_of_the_agency_can_manage_them(client, agency, domain):
    admin = UserFactory(agency=agency, email="carol@hdb.gov.sg", role=User.Role.ADMIN)

    response = login(client, admin).get(f"/senders/domains/{domain.pk}/")

    assert response.status_code == HTTPStatus.OK


def test_an_outsider_gets_404_for_every_row(client, outsider, domain, address):
    client = login(client, outsider)

    assert DOMAIN not in client.get("/senders/").text
    for method, path in [
        ("get", f"/senders/domains/{domain.pk}/"),
        ("post", f"/senders/domains/{domain.pk}/check"),
        ("post", f"/senders/domains/{domain.pk}/remove"),
        ("post", f"/senders/addresses/{address.pk}/resend"),
        ("post", f"/senders/addresses/{address.pk}/remove"),
    ]:
        assert getattr(client, method)(path).status_code == HTTPStatus.NOT_FOUND, path
    assert SenderDomain.objects.filter(pk=domain.pk).exists()
    assert VerifiedSender.objects.filter(pk=address.pk).exists()


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/senders/")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/login?next=/senders/"


# -- pages --------------------------------------------------------------------------------------


def test_the_domain_page_shows_every_record_with_copy_buttons_and_never_the_key(
    client, owner, domain
):
    response = login(client, owner).get(f"/senders/domains/{domain.pk}/")

    page = response.text
    names = [name for name, _ in shown_records(page)]
    assert names == [
        f"_postman.{DOMAIN}",
        f"{domain.dkim_selector}._domainkey.{DOMAIN}",
        DOMAIN,
        f"_dmarc.{DOMAIN}",
    ]
    assert page.count("data-copy=") == 8
    assert domain.dkim_public_key in page
    assert "PRIVATE" not in page
    assert domain.dkim_private_key not in page


def test_adding_an_invalid_domain_shows_the_error(client, owner):
    response = login(client, owner).post("/senders/domains/add", {"domain": "not a domain"})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "is not a valid domain name" in response.text
    assert not SenderDomain.objects.exists()


def test_adding_an_address_sends_the_link(client, owner):
    response = login(client, owner).post("/senders/addresses/add", {"address": "Clerk@Example.org"})

    assert response.status_code == HTTPStatus.FOUND
    sender = VerifiedSender.objects.get()
    assert (sender.address, sender.agency, sender.verified_at) == (
        "clerk@example.org",
        owner.agency,
        None,
    )
    assert Email.objects.filter(recipient="clerk@example.org").count() == 1
    follow = client.get("/senders/")
    assert "A confirmation link was sent to clerk@example.org" in follow.text


def test_an_address_refused_by_the_service_shows_why(client, owner, outsider):
    VerifiedSenderFactory(agency=outsider.agency, address="clerk@example.org")

    response = login(client, owner).post("/senders/addresses/add", {"address": "clerk@example.org"})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "verified by another agency" in response.text


def test_removing_an_address(client, owner, address):
    response = login(client, owner).post(f"/senders/addresses/{address.pk}/remove")

    assert response.status_code == HTTPStatus.FOUND
    assert not VerifiedSender.objects.exists()
    assert AuditEvent.objects.get(action="sender.removed").actor == owner


def test_removing_a_domain(client, owner, domain):
    response = login(client, owner).post(f"/senders/domains/{domain.pk}/remove")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/senders/"
    assert not SenderDomain.objects.exists()


def test_check_now_reports_lookups_that_did_not_answer(client, owner, domain, dns_server):
    dns_server.failing.add(f"_postman.{DOMAIN}")

    response = login(client, owner).post(f"/senders/domains/{domain.pk}/check", follow=True)

    assert f"did not answer for _postman.{DOMAIN}" in response.text
    assert "is pending" in response.text


# -- the "done when" --------------------------------------------------------------------


def test_a_new_user_verifies_a_domain_and_sends_dkim_signed_mail_from_it(
    client, owner, api, dns_server, smtp_peer
):
    client = login(client, owner)

    # Add the domain in the portal.
    response = client.post("/senders/domains/add", {"domain": DOMAIN})
    assert response.status_code == HTTPStatus.FOUND
    domain_page = response["Location"]
    page = client.get(domain_page).text
    assert "Publish the records below" in page

    # Publish the shown records in the (test) DNS, then press "Check now".
    records = shown_records(page)
    assert len(records) == 4
    for name, value in records:
        dns_server.add_txt(name, value)
    response = client.post(f"{domain_page}check", follow=True)

    # See it verified.
    assert response.status_code == HTTPStatus.OK
    assert f"{DOMAIN} is verified" in response.text
    assert '<span class="badge badge-verified">Verified</span>' in response.text
    assert "Last checked" in response.text

    # Send from alerts@<domain> through the API.
    response = api.client.post(
        "/v1/transactional/email/send",
        {
            "recipient": "citizen@example.com",
            "subject": "Your appointment",
            "body": "<p>See you on Monday.</p>",
            "from": f"HDB Alerts <alerts@{DOMAIN}>",
        },
        format="json",
    )
    assert response.status_code == HTTPStatus.CREATED
    deliver_email(int(response.json()["id"]))

    # The delivered message's DKIM signature verifies against the published key.
    [received] = smtp_peer.received
    assert received.message["From"] == f"HDB Alerts <alerts@{DOMAIN}>"
    assert dkim.verify(received.raw, dnsfunc=dns_server.dkim_dnsfunc)
