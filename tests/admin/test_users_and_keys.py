"""Users and API keys in the admin."""

from __future__ import annotations

from http import HTTPStatus

from accounts.models import AuditEvent, User
from apikeys.models import ApiKey

SEND = "/v1/transactional/email/send"


def test_staff_create_a_user_and_it_is_audited(staff_client, staff, agency):
    response = staff_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "New.Person@HDB.gov.sg",
            "agency": agency.pk,
            "role": "member",
            "usable_password": "false",
        },
    )

    assert response.status_code == HTTPStatus.FOUND
    user = User.objects.get(email="new.person@hdb.gov.sg")
    assert (user.agency, user.role, user.has_usable_password()) == (agency, "member", False)
    event = AuditEvent.objects.get(action="user.created")
    assert (event.actor, event.agency, event.target_id) == (staff, agency, str(user.pk))
    assert "password" not in event.details["values"]


def test_granting_staff_rights_is_audited_with_the_change(staff_client, staff, owner):
    response = staff_client.post(
        f"/admin/accounts/user/{owner.pk}/change/",
        {
            "email": owner.email,
            "agency": owner.agency.pk,
            "role": "admin",
            "is_active": "on",
            "is_staff": "on",
            "date_joined_0": "2024-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:2000]
    owner.refresh_from_db()
    assert owner.is_staff
    event = AuditEvent.objects.get(action="user.changed")
    assert event.actor == staff
    assert event.details["changes"]["is_staff"] == {"from": False, "to": True}


def test_setting_a_password_is_audited_without_the_password(staff_client, staff, owner):
    response = staff_client.post(
        f"/admin/accounts/user/{owner.pk}/password/",
        {
            "usable_password": "true",
            "password1": "a long unguessable passphrase",
            "password2": "a long unguessable passphrase",
        },
    )

    assert response.status_code == HTTPStatus.FOUND
    event = AuditEvent.objects.get(action="user.password_set")
    assert (event.actor, event.target_id, event.details) == (staff, str(owner.pk), {"usable": True})


def test_users_cannot_be_deleted(staff_client, owner):
    response = staff_client.post(f"/admin/accounts/user/{owner.pk}/delete/", {"post": "yes"})

    assert response.status_code == HTTPStatus.FORBIDDEN


def test_the_key_page_never_shows_the_digest(staff_client, api):
    for url in ["/admin/apikeys/apikey/", f"/admin/apikeys/apikey/{api.key.pk}/change/"]:
        page = staff_client.get(url).content.decode()

        assert api.key.digest not in page
        assert api.plaintext not in page
        assert f"…{api.key.last_five}" in page


def test_keys_are_read_only(staff_client, api):
    response = staff_client.post(
        f"/admin/apikeys/apikey/{api.key.pk}/change/", {"label": "renamed"}
    )

    assert response.status_code == HTTPStatus.FORBIDDEN
    api.key.refresh_from_db()
    assert api.key.label == "test"


def test_staff_revoke_a_key_and_the_next_call_gets_401(staff_client, staff, api):
    response = staff_client.post(
        "/admin/apikeys/apikey/", {"action": "revoke", "_selected_action": [api.key.pk]}
    )

    assert response.status_code == HTTPStatus.FOUND
    assert ApiKey.objects.get(pk=api.key.pk).revoked_at is not None
    event = AuditEvent.objects.get(action="apikey.revoked")
    assert (event.actor, event.actor_kind, event.agency) == (staff, "staff", api.agency)
    send = api.client.post(
        SEND, {"recipient": "a@example.com", "subject": "s", "body": "b"}, format="json"
    )
    assert send.status_code == HTTPStatus.UNAUTHORIZED


def test_revoking_an_already_revoked_key_writes_nothing(staff_client, api):
    for _ in range(2):
        staff_client.post(
            "/admin/apikeys/apikey/", {"action": "revoke", "_selected_action": [api.key.pk]}
        )

    assert AuditEvent.objects.filter(action="apikey.revoked").count() == 1


def test_staff_find_a_key_by_its_last_five_characters(staff_client, api, teammate_api):
    page = staff_client.get("/admin/apikeys/apikey/", {"q": api.key.last_five}).content.decode()

    assert f"…{api.key.last_five}" in page
    assert f"…{teammate_api.key.last_five}" not in page
