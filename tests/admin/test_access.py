"""Every staff page opens for staff and sends anyone else to the admin login."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client

from apikeys.services import apikey_create
from emails.models import Suppression
from tests.factories import BlacklistEntryFactory, EmailFactory

CHANGELISTS = [
    "/admin/",
    "/admin/accounts/agency/",
    "/admin/accounts/user/",
    "/admin/accounts/auditevent/",
    "/admin/apikeys/apikey/",
    "/admin/emails/email/",
    "/admin/emails/blacklistentry/",
    "/admin/emails/blacklistentry/import/",
    "/admin/emails/blacklistentry/add/",
    "/admin/emails/suppression/",
    "/admin/accounts/agency/add/",
    "/admin/accounts/user/add/",
]


@pytest.fixture
def objects(owner):
    """One row of every model, so that change pages have something to show."""
    key = apikey_create(owner=owner, label="ops").key
    email = EmailFactory(agency=owner.agency, api_key=key)
    entry = BlacklistEntryFactory()
    suppression = Suppression.objects.create(
        agency=owner.agency, address="s@example.com", source="admin"
    )
    return [
        f"/admin/accounts/agency/{owner.agency.pk}/change/",
        f"/admin/accounts/user/{owner.pk}/change/",
        f"/admin/accounts/user/{owner.pk}/password/",
        f"/admin/apikeys/apikey/{key.pk}/change/",
        f"/admin/emails/email/{email.pk}/change/",
        f"/admin/emails/blacklistentry/{entry.pk}/change/",
        f"/admin/emails/blacklistentry/{entry.pk}/delete/",
        f"/admin/emails/suppression/{suppression.pk}/change/",
        f"/admin/emails/suppression/{suppression.pk}/delete/",
        "/admin/accounts/auditevent/",
    ]


def test_staff_open_every_page(staff_client, objects):
    for url in [*CHANGELISTS, *objects]:
        response = staff_client.get(url)
        assert response.status_code == HTTPStatus.OK, url


def test_an_agency_admin_is_sent_to_the_admin_login(owner, objects):
    client = Client()
    client.force_login(owner)  # an agency admin in the portal, not staff

    for url in [*CHANGELISTS, *objects]:
        response = client.get(url)
        assert response.status_code == HTTPStatus.FOUND, url
        assert response["Location"].startswith("/admin/login/?next="), url


def test_anonymous_visitors_are_sent_to_the_admin_login(client, objects):
    for url in [*CHANGELISTS, *objects, "/admin/emails/blacklistentry/export/"]:
        response = client.get(url)
        assert response.status_code == HTTPStatus.FOUND, url
        assert response["Location"].startswith("/admin/login/?next="), url


def test_staff_without_permissions_cannot_import_or_export(limited_staff, objects):
    client = Client()
    client.force_login(limited_staff)

    assert client.get("/admin/emails/blacklistentry/import/").status_code == HTTPStatus.FORBIDDEN
    assert client.get("/admin/emails/blacklistentry/export/").status_code == HTTPStatus.FORBIDDEN
    assert client.get("/admin/emails/email/").status_code == HTTPStatus.FORBIDDEN


def test_a_deactivated_staff_member_is_logged_out(staff, staff_client):
    staff.is_active = False
    staff.save()

    response = staff_client.get("/admin/emails/email/")

    assert response.status_code == HTTPStatus.FOUND


def test_no_object_can_be_added_where_the_admin_is_read_only(staff_client, owner):
    for url in [
        "/admin/emails/email/add/",
        "/admin/apikeys/apikey/add/",
        "/admin/accounts/auditevent/add/",
        "/admin/emails/suppression/add/",
    ]:
        assert staff_client.get(url).status_code == HTTPStatus.FORBIDDEN, url
