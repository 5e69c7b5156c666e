from __future__ import annotations

import re
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent
from apikeys.models import ApiKey
from apikeys.services import apikey_create, apikey_digest

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r'id="new-key"[^>]*>([^<]+)</pre>')

CREATE = {
    "label": "Appointments",
    "contacts": "alice@hdb.gov.sg\nops@hdb.gov.sg",
    "scopes": ["send", "read"],
    "validity": "6",
}


def plaintext_on(response) -> str:
    return KEY_RE.search(response.content.decode())[1]


@pytest.fixture
def owner_key(owner) -> ApiKey:
    return apikey_create(owner=owner, label="Owner's key").key


@pytest.fixture
def teammate_key(teammate) -> ApiKey:
    return apikey_create(owner=teammate, label="Teammate's key").key


# --- list ------------------------------------------------------------------------------------


def test_an_admin_sees_every_key_of_the_agency(owner_client, owner_key, teammate_key, outsider):
    theirs = apikey_create(owner=outsider, label="Outsider's key").key

    response = owner_client.get("/keys/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "keys"
    assert {row.key for row in response.context["rows"]} == {owner_key, teammate_key}
    assert theirs.label not in response.content.decode()
    assert "bob@hdb.gov.sg" in response.content.decode()  # the owner column


def test_a_member_sees_only_their_own_keys(teammate_client, owner_key, teammate_key):
    response = teammate_client.get("/keys/")

    assert [row.key for row in response.context["rows"]] == [teammate_key]


def test_an_outsider_sees_none(outsider_client, owner_key):
    assert outsider_client.get("/keys/").context["rows"] == []


def test_the_list_shows_what_a_key_is(owner_client, owner):
    rotated = apikey_create(owner=owner, label="Old", contacts=["ops@hdb.gov.sg"]).key
    from apikeys.services import apikey_revoke, apikey_rotate

    successor = apikey_rotate(key=rotated, grace=timedelta(days=7)).key
    revoked = apikey_revoke(key=apikey_create(owner=owner, label="Gone").key)
    expiring = apikey_create(owner=owner, label="Soon", valid_for=timedelta(days=3)).key

    rows = {row.key.pk: row for row in owner_client.get("/keys/").context["rows"]}

    assert rows[rotated.pk].state == "rotated"
    assert rows[rotated.pk].successor == successor
    assert rows[successor.pk].state == "active"
    assert rows[revoked.pk].state == "revoked"
    assert rows[expiring.pk].state == "expiring"
    html = owner_client.get("/keys/").content.decode()
    assert f"…{successor.last_five}" in html
    assert "ops@hdb.gov.sg" in html


def test_no_keys_shows_how_to_start(owner_client, settings):
    settings.PUBLIC_BASE_URL = "https://postman.example.gov.sg"

    html = owner_client.get("/keys/").content.decode()

    assert "No API keys yet" in html
    assert "https://postman.example.gov.sg/v1/transactional/email/send" in html


# --- create ----------------------------------------------------------------------------------


def test_creating_a_key_shows_the_plaintext_once(owner_client, owner):
    response = owner_client.post("/keys/new", CREATE)

    assert response.status_code == HTTPStatus.OK
    plaintext = plaintext_on(response)
    key = ApiKey.objects.get()
    assert key.digest == apikey_digest(plaintext)
    assert key.owner == owner
    assert key.contacts == ["alice@hdb.gov.sg", "ops@hdb.gov.sg"]
    assert key.mode == "live"
    assert "shown only once" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # Never kept anywhere it could be read again.
    assert plaintext not in str(dict(owner_client.session))
    assert plaintext not in owner_client.get("/keys/").content.decode()
    event = AuditEvent.objects.get(action="apikey.created")
    assert event.actor == owner


def test_the_new_key_works_against_the_api(owner_client):
    plaintext = plaintext_on(owner_client.post("/keys/new", CREATE))

    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert api.get("/v1/transactional/email").status_code == HTTPStatus.OK


def test_a_member_creates_their_own_test_key(teammate_client, teammate):
    data = {**CREATE, "contacts": "bob@hdb.gov.sg", "test": "on", "scopes": ["send"]}

    plaintext = plaintext_on(teammate_client.post("/keys/new", data))

    key = ApiKey.objects.get()
    assert key.owner == teammate
    assert key.mode == "test"
    assert key.scopes == ["send"]
    assert "_test_v1_" in plaintext


def test_validity_is_at_most_twelve_months(owner_client):
    response = owner_client.post("/keys/new", {**CREATE, "validity": "24"})
    owner_client.post("/keys/new", {**CREATE, "validity": "12"})

    assert response.context["form"].errors["validity"]
    key = ApiKey.objects.get()
    assert key.valid_until - timezone.now() <= timedelta(days=366)
    assert key.valid_until - timezone.now() > timedelta(days=360)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"label": ""}, "label"),
        ({"contacts": "not-an-address"}, "__all__"),
        ({"contacts": ""}, "contacts"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["admin"]}, "scopes"),
    ],
)
def test_bad_input_is_shown_on_the_form(owner_client, change, field):
    response = owner_client.post("/keys/new", {**CREATE, **change})

    assert response.status_code == HTTPStatus.OK
    assert field in response.context["form"].errors
    assert not ApiKey.objects.exists()


def test_the_create_form_needs_the_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)

    assert client.post("/keys/new", CREATE).status_code == HTTPStatus.FORBIDDEN
    assert not ApiKey.objects.exists()


# --- contacts --------------------------------------------------------------------------------


def test_the_owner_edits_contacts(owner_client, owner_key):
    response = owner_client.post(
        f"/keys/{owner_key.pk}/contacts", {"contacts": "a@hdb.gov.sg, b@hdb.gov.sg"}
    )

    assert response["Location"] == "/keys/"
    owner_key.refresh_from_db()
    assert owner_key.contacts == ["a@hdb.gov.sg", "b@hdb.gov.sg"]
    assert AuditEvent.objects.filter(action="apikey.contacts_updated").exists()


def test_invalid_contacts_are_refused(owner_client, owner_key):
    response = owner_client.post(f"/keys/{owner_key.pk}/contacts", {"contacts": "nope"})

    assert response.status_code == HTTPStatus.OK
    assert response.context["form"].errors["contacts"]
    owner_key.refresh_from_db()
    assert owner_key.contacts == ["alice@hdb.gov.sg"]


# --- rotate ----------------------------------------------------------------------------------


def test_rotating_asks_for_the_grace_period_first(owner_client, owner_key):
    response = owner_client.get(f"/keys/{owner_key.pk}/rotate")

    assert response.status_code == HTTPStatus.OK
    assert [value for value, _ in response.context["form"].fields["grace"].choices] == [
        "0",
        "1h",
        "24h",
        "7d",
        "30d",
    ]
    assert ApiKey.objects.count() == 1


def test_rotating_issues_a_successor_and_keeps_the_old_key_for_the_grace(owner_client, owner_key):
    response = owner_client.post(f"/keys/{owner_key.pk}/rotate", {"grace": "24h"})

    successor = ApiKey.objects.get(predecessor=owner_key)
    assert successor.digest == apikey_digest(plaintext_on(response))
    assert successor.label == owner_key.label
    owner_key.refresh_from_db()
    remaining = owner_key.valid_until - timezone.now()
    assert timedelta(hours=23) < remaining <= timedelta(hours=24)
    assert "keeps working until" in response.content.decode()


def test_rotating_with_no_grace_stops_the_old_key_now(owner_client, owner_key):
    response = owner_client.post(f"/keys/{owner_key.pk}/rotate", {"grace": "0"})

    owner_key.refresh_from_db()
    assert not owner_key.is_usable()
    assert "stopped working now" in response.content.decode()


def test_a_rotated_key_cannot_be_rotated_again(owner_client, owner_key):
    owner_client.post(f"/keys/{owner_key.pk}/rotate", {"grace": "1h"})

    response = owner_client.post(f"/keys/{owner_key.pk}/rotate", {"grace": "1h"})

    assert "already been rotated" in response.content.decode()
    assert ApiKey.objects.count() == 2


def test_an_unknown_grace_is_refused(owner_client, owner_key):
    response = owner_client.post(f"/keys/{owner_key.pk}/rotate", {"grace": "1y"})

    assert response.context["form"].errors["grace"]
    assert ApiKey.objects.count() == 1


# --- revoke ----------------------------------------------------------------------------------


def test_revoking_asks_for_confirmation_first(owner_client, owner_key):
    response = owner_client.get(f"/keys/{owner_key.pk}/revoke")

    assert response.status_code == HTTPStatus.OK
    assert "cannot be undone" in response.content.decode()
    owner_key.refresh_from_db()
    assert owner_key.revoked_at is None


def test_revoking_stops_the_key_at_once(owner_client, owner):
    created = apikey_create(owner=owner, label="Gone soon")

    response = owner_client.post(f"/keys/{created.key.pk}/revoke", follow=True)

    created.key.refresh_from_db()
    assert created.key.revoked_at is not None
    assert "is revoked" in response.content.decode()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")
    assert api.get("/v1/transactional/email").status_code == HTTPStatus.UNAUTHORIZED
    assert AuditEvent.objects.filter(action="apikey.revoked").exists()


# --- who may do what -------------------------------------------------------------------------

ACTIONS = [
    ("get", "contacts", {}),
    ("post", "contacts", {"contacts": "x@hdb.gov.sg"}),
    ("get", "rotate", {}),
    ("post", "rotate", {"grace": "0"}),
    ("get", "revoke", {}),
    ("post", "revoke", {}),
]


@pytest.mark.parametrize(("method", "action", "data"), ACTIONS)
def test_a_member_cannot_touch_a_teammates_key(teammate_client, owner_key, method, action, data):
    response = getattr(teammate_client, method)(f"/keys/{owner_key.pk}/{action}", data)

    assert response.status_code == HTTPStatus.NOT_FOUND
    owner_key.refresh_from_db()
    assert owner_key.revoked_at is None
    assert owner_key.contacts == ["alice@hdb.gov.sg"]
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(("method", "action", "data"), ACTIONS)
def test_an_outsider_cannot_touch_the_agencys_keys(
    outsider_client, owner_key, method, action, data
):
    response = getattr(outsider_client, method)(f"/keys/{owner_key.pk}/{action}", data)

    assert response.status_code == HTTPStatus.NOT_FOUND
    owner_key.refresh_from_db()
    assert owner_key.revoked_at is None
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(("method", "action", "data"), ACTIONS)
def test_a_member_manages_their_own_key(teammate_client, teammate_key, method, action, data):
    response = getattr(teammate_client, method)(f"/keys/{teammate_key.pk}/{action}", data)

    teammate_key.refresh_from_db()
    if method == "get":
        assert response.status_code == HTTPStatus.OK
    elif action == "contacts":
        assert response.status_code == HTTPStatus.FOUND
        assert teammate_key.contacts == ["x@hdb.gov.sg"]
    elif action == "rotate":
        assert response.status_code == HTTPStatus.OK  # the new key is shown once
        assert ApiKey.objects.filter(predecessor=teammate_key).exists()
    else:
        assert response.status_code == HTTPStatus.FOUND
        assert teammate_key.revoked_at is not None


def test_an_admin_manages_a_members_key(owner_client, teammate_key):
    owner_client.post(f"/keys/{teammate_key.pk}/revoke")

    teammate_key.refresh_from_db()
    assert teammate_key.revoked_at is not None


@pytest.mark.parametrize("path", ["/keys/", "/keys/new", "/keys/1/rotate"])
def test_anonymous_visitors_are_sent_to_log_in(client, path):
    assert client.get(path)["Location"].startswith("/login?next=")
