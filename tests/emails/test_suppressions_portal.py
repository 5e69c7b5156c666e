"""The suppression pages of the portal: agency admins only, and never another agency's entries."""

from __future__ import annotations

import csv
import io
from http import HTTPStatus

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import AuditEvent, User
from emails.models import Suppression
from tests.factories import AgencyFactory, UserFactory

SEND = "/v1/transactional/email/send"


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(owner) -> Client:
    return client_for(owner)


@pytest.fixture
def outsider(db) -> User:
    return UserFactory(agency=AgencyFactory(domain="mom.gov.sg"), email="mallory@mom.gov.sg")


@pytest.fixture
def ours(agency) -> Suppression:
    return Suppression.objects.create(
        agency=agency, address="ours@example.com", source="complaint", reason="marked as spam"
    )


@pytest.fixture
def theirs(outsider) -> Suppression:
    return Suppression.objects.create(
        agency=outsider.agency, address="theirs@example.com", source="admin"
    )


def upload(content: bytes, name: str = "list.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def send(api, recipient="citizen@example.com"):
    body = {"recipient": recipient, "subject": "Hi", "body": "<p>Hi</p>"}
    return api.client.post(SEND, body, format="json")


# --- access -------------------------------------------------------------------------------------


PAGES = ["/suppressions/", "/suppressions/export"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_login(client, path):
    response = client.get(path)

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", PAGES)
def test_members_are_refused(agency, path):
    member = UserFactory(agency=agency, role=User.Role.MEMBER)

    assert client_for(member).get(path).status_code == HTTPStatus.FORBIDDEN


def test_members_cannot_add(agency):
    member = UserFactory(agency=agency, role=User.Role.MEMBER)

    response = client_for(member).post(
        "/suppressions/add", {"address": "a@example.com", "reason": "r"}
    )

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not Suppression.objects.exists()


# --- list and search ----------------------------------------------------------------------------


def test_the_list_shows_the_agency_entries_only(admin_client, ours, theirs):
    response = admin_client.get("/suppressions/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "suppressions"
    assert "ours@example.com" in response.text and "marked as spam" in response.text
    assert "theirs@example.com" not in response.text


def test_another_agency_never_sees_our_entries(outsider, ours, theirs):
    client = client_for(outsider)

    assert "ours@example.com" not in client.get("/suppressions/").text
    assert "ours@example.com" not in client.get("/suppressions/", {"q": "ours@"}).text
    assert b"ours@example.com" not in b"".join(client.get("/suppressions/export").streaming_content)


def test_search_by_address_or_its_beginning(admin_client, agency, ours):
    Suppression.objects.create(agency=agency, address="other@example.org", source="admin")

    found = admin_client.get("/suppressions/", {"q": "OURS@"}).text
    empty = admin_client.get("/suppressions/", {"q": "nobody@"}).text

    assert "ours@example.com" in found and "other@example.org" not in found
    assert "No suppressed address starts with" in empty


def test_an_empty_list_explains_itself(admin_client):
    assert "No suppressed addresses" in admin_client.get("/suppressions/").text


def test_the_list_is_paginated(admin_client, agency):
    Suppression.objects.bulk_create(
        Suppression(agency=agency, address=f"a{i}@example.com", source="import") for i in range(60)
    )

    first = admin_client.get("/suppressions/")
    second = admin_client.get("/suppressions/", {"page": "2"})

    assert len(first.context["page"].object_list) == 50
    assert len(second.context["page"].object_list) == 10
    assert "page=2" in first.text


# --- add ----------------------------------------------------------------------------------------


def test_an_admin_adds_an_address_with_a_reason(admin_client, owner, api):
    response = admin_client.post(
        "/suppressions/add", {"address": " Citizen@Example.com ", "reason": "asked to stop"}
    )

    assert response.status_code == HTTPStatus.FOUND
    entry = Suppression.objects.get()
    assert (entry.agency, entry.address, entry.source, entry.reason, entry.created_by) == (
        owner.agency,
        "citizen@example.com",
        "admin",
        "asked to stop",
        owner,
    )
    event = AuditEvent.objects.get(action="suppression.added")
    assert (event.actor, event.actor_kind, event.agency) == (owner, "user", owner.agency)
    assert send(api).status_code == HTTPStatus.BAD_REQUEST


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"address": "nope", "reason": "r"}, "Enter a valid email address"),
        ({"address": "a@example.com", "reason": ""}, "Give a reason."),
        ({"address": "", "reason": "r"}, "Enter an address."),
    ],
)
def test_a_bad_add_shows_the_error_and_adds_nothing(admin_client, data, error):
    response = admin_client.post("/suppressions/add", data)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert error in response.text
    assert not Suppression.objects.exists()


def test_adding_an_address_twice_says_so(admin_client, ours):
    response = admin_client.post(
        "/suppressions/add", {"address": "OURS@example.com", "reason": "r"}, follow=True
    )

    assert "ours@example.com was already suppressed (Complaint" in response.text
    assert Suppression.objects.get().reason == "marked as spam"


# --- upload -------------------------------------------------------------------------------------


def test_an_upload_adds_good_rows_and_reports_the_others(admin_client, owner, ours):
    content = (
        b"email,reason\n"
        b"New@Example.com,\n"
        b"broken-address,\n"
        b"new@example.COM,\n"
        b"ours@example.com,\n"
        b"second@example.org,unsubscribed by phone\n"
    )

    response = admin_client.post(
        "/suppressions/import", {"file": upload(content), "reason": "ticket 7"}
    )

    assert response.status_code == HTTPStatus.OK
    added = dict(Suppression.objects.filter(source="import").values_list("address", "reason"))
    assert added == {"new@example.com": "ticket 7", "second@example.org": "unsubscribed by phone"}
    page = response.text
    assert "2 addresses suppressed" in page
    for line, why in [
        (3, "Not a valid email address"),
        (4, "Duplicate of line 2"),
        (5, "Already suppressed"),
    ]:
        assert f'<td class="num">{line}</td>' in page and why in page
    event = AuditEvent.objects.get(action="suppression.imported")
    assert (event.actor, event.agency, event.details["added"], event.details["rejected"]) == (
        owner,
        owner.agency,
        2,
        3,
    )


def test_an_unreadable_upload_is_refused_whole(admin_client):
    response = admin_client.post(
        "/suppressions/import", {"file": upload(b"\xff\xfe\x00x"), "reason": "r"}
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "not UTF-8" in response.text
    assert not Suppression.objects.exists()


def test_an_upload_needs_a_file_and_a_reason(admin_client):
    response = admin_client.post("/suppressions/import", {"reason": ""})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Choose a CSV file." in response.text


# --- remove -------------------------------------------------------------------------------------


def test_removal_asks_for_a_reason_first(admin_client, ours):
    page = admin_client.get(f"/suppressions/{ours.pk}/remove")
    no_reason = admin_client.post(f"/suppressions/{ours.pk}/remove", {"reason": ""})

    assert page.status_code == HTTPStatus.OK
    assert "marked an email of yours as spam" in page.text
    assert no_reason.status_code == HTTPStatus.BAD_REQUEST
    assert Suppression.objects.filter(pk=ours.pk).exists()


def test_an_admin_removes_an_address_and_the_next_send_goes_out(admin_client, owner, api):
    entry = Suppression.objects.create(
        agency=owner.agency, address="citizen@example.com", source="admin"
    )
    assert send(api).status_code == HTTPStatus.BAD_REQUEST

    response = admin_client.post(f"/suppressions/{entry.pk}/remove", {"reason": "asked again"})

    assert response.status_code == HTTPStatus.FOUND
    assert not Suppression.objects.exists()
    event = AuditEvent.objects.get(action="suppression.removed")
    assert (event.actor, event.details["reason"]) == (owner, "asked again")
    assert send(api).status_code == HTTPStatus.CREATED


def test_another_agency_entry_is_not_found(admin_client, theirs):
    page = admin_client.get(f"/suppressions/{theirs.pk}/remove")
    remove = admin_client.post(f"/suppressions/{theirs.pk}/remove", {"reason": "mine now"})

    assert page.status_code == HTTPStatus.NOT_FOUND
    assert remove.status_code == HTTPStatus.NOT_FOUND
    assert Suppression.objects.filter(pk=theirs.pk).exists()
    assert not AuditEvent.objects.exists()


# --- export -------------------------------------------------------------------------------------


def test_export_downloads_the_agency_list_as_csv(admin_client, ours, theirs):
    response = admin_client.get("/suppressions/export")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="suppressions-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[:3] for row in rows] == [
        ["address", "source", "reason"],
        ["ours@example.com", "complaint", "marked as spam"],
    ]
