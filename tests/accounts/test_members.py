from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client

from accounts.models import AuditEvent, User
from accounts.services import LAST_ADMIN
from apikeys.services import apikey_create
from emails.models import Email
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def audit_actions(agency) -> list[str]:
    return list(
        AuditEvent.objects.filter(agency=agency).order_by("id").values_list("action", flat=True)
    )


# --- the page --------------------------------------------------------------------------------


def test_an_admin_sees_the_agencys_members(owner_client, owner, teammate, outsider):
    response = owner_client.get("/members/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "members"
    assert set(response.context["members"]) == {owner, teammate}
    assert outsider.email not in response.content.decode()


def test_removed_members_are_not_listed(owner_client, teammate):
    teammate.is_active = False
    teammate.save()

    assert teammate not in owner_client.get("/members/").context["members"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/members/"),
        ("post", "/members/invite"),
        ("post", "/members/{id}/role"),
        ("get", "/members/{id}/remove"),
        ("post", "/members/{id}/remove"),
        ("get", "/audit/"),
    ],
)
def test_a_member_cannot_manage_members(teammate_client, owner, method, path):
    url = path.format(id=owner.pk)
    data = {"email": "new@hdb.gov.sg", "role": "admin"}

    response = getattr(teammate_client, method)(url, data if method == "post" else None)

    assert response.status_code == HTTPStatus.FORBIDDEN
    owner.refresh_from_db()
    assert owner.role == User.Role.ADMIN and owner.is_active
    assert not User.objects.filter(email="new@hdb.gov.sg").exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/members/{id}/role"),
        ("get", "/members/{id}/remove"),
        ("post", "/members/{id}/remove"),
    ],
)
def test_another_agencys_member_is_not_found(outsider_client, teammate, method, path):
    response = getattr(outsider_client, method)(path.format(id=teammate.pk), {"role": "admin"})

    assert response.status_code == HTTPStatus.NOT_FOUND
    teammate.refresh_from_db()
    assert teammate.role == User.Role.MEMBER and teammate.is_active


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/members/")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/login?next=/members/"


# --- invite ----------------------------------------------------------------------------------


def test_an_admin_invites_someone(owner_client, owner):
    response = owner_client.post("/members/invite", {"email": "Carol@HDB.gov.sg", "role": "member"})

    assert response.status_code == HTTPStatus.FOUND
    carol = User.objects.get(email="carol@hdb.gov.sg")
    assert carol.agency == owner.agency
    assert carol.role == User.Role.MEMBER
    event = AuditEvent.objects.get(action="member.invited")
    assert event.actor == owner
    assert event.ip_address == "127.0.0.1"
    assert event.details == {"role": "member"}
    invitation = Email.objects.get(recipient="carol@hdb.gov.sg")
    assert invitation.agency == owner.agency
    assert "/login" in invitation.html


def test_someone_from_another_signup_domain_can_be_invited_as_admin(owner_client, owner):
    owner_client.post("/members/invite", {"email": "dev@tech.gov.sg", "role": "admin"})

    dev = User.objects.get(email="dev@tech.gov.sg")
    assert dev.agency == owner.agency
    assert dev.role == User.Role.ADMIN


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("someone@gmail.com", "can log in to the portal"),
        ("not-an-address", "valid email"),
        ("bob@hdb.gov.sg", "already a member"),
        ("mallory@mom.gov.sg", "another agency"),
    ],
)
def test_invitations_that_cannot_work_are_refused(owner_client, teammate, outsider, email, message):
    before = User.objects.count()

    response = owner_client.post("/members/invite", {"email": email, "role": "member"})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert message in response.content.decode()
    assert User.objects.count() == before
    assert not AuditEvent.objects.filter(action="member.invited").exists()
    outsider.refresh_from_db()
    assert outsider.agency != teammate.agency


def test_inviting_a_removed_member_brings_them_back(owner_client, teammate):
    teammate.is_active = False
    teammate.save()

    owner_client.post("/members/invite", {"email": teammate.email, "role": "admin"})

    teammate.refresh_from_db()
    assert teammate.is_active
    assert teammate.role == User.Role.ADMIN


def test_a_staff_account_without_agency_can_be_invited(owner_client, owner):
    staff = User.objects.create_user("ops@tech.gov.sg", is_staff=True)

    owner_client.post("/members/invite", {"email": staff.email, "role": "member"})

    staff.refresh_from_db()
    assert staff.agency == owner.agency


# --- roles -----------------------------------------------------------------------------------


def test_an_admin_changes_a_role(owner_client, owner, teammate):
    response = owner_client.post(f"/members/{teammate.pk}/role", {"role": "admin"})

    assert response.status_code == HTTPStatus.FOUND
    teammate.refresh_from_db()
    assert teammate.role == User.Role.ADMIN
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.actor == owner
    assert event.details == {"from": "member", "to": "admin"}


def test_the_last_admin_cannot_be_demoted(owner_client, owner, teammate):
    response = owner_client.post(f"/members/{owner.pk}/role", {"role": "member"}, follow=True)

    owner.refresh_from_db()
    assert owner.role == User.Role.ADMIN
    assert LAST_ADMIN in response.content.decode()
    assert "member.role_changed" not in audit_actions(owner.agency)


def test_an_admin_can_step_down_when_another_admin_remains(owner_client, owner, teammate):
    teammate.role = User.Role.ADMIN
    teammate.save()

    owner_client.post(f"/members/{owner.pk}/role", {"role": "member"})

    owner.refresh_from_db()
    assert owner.role == User.Role.MEMBER
    # Now a member: the members page is closed to them.
    assert owner_client.get("/members/").status_code == HTTPStatus.FORBIDDEN


def test_an_unknown_role_is_refused(owner_client, teammate):
    owner_client.post(f"/members/{teammate.pk}/role", {"role": "superuser"})

    teammate.refresh_from_db()
    assert teammate.role == User.Role.MEMBER


# --- remove ----------------------------------------------------------------------------------


def test_removing_asks_for_confirmation_first(owner_client, teammate):
    key = apikey_create(owner=teammate, label="Batch job").key

    response = owner_client.get(f"/members/{teammate.pk}/remove")

    assert response.status_code == HTTPStatus.OK
    assert "Batch job" in response.content.decode()
    teammate.refresh_from_db()
    assert teammate.is_active
    key.refresh_from_db()
    assert key.revoked_at is None


def test_an_admin_removes_a_member_and_their_keys_stop_working(owner_client, owner, teammate):
    created = apikey_create(owner=teammate, label="Batch job")
    teammate_session = Client()
    teammate_session.force_login(teammate)

    response = owner_client.post(f"/members/{teammate.pk}/remove")

    assert response.status_code == HTTPStatus.FOUND
    teammate.refresh_from_db()
    assert not teammate.is_active
    created.key.refresh_from_db()
    assert created.key.revoked_at is not None
    assert audit_actions(owner.agency)[-2:] == ["apikey.revoked", "member.removed"]
    assert AuditEvent.objects.get(action="member.removed").details["keys_revoked"] == 1
    # Logged out everywhere at once.
    assert teammate_session.get("/")["Location"].startswith("/login")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")
    assert api.get("/v1/transactional/email").status_code == HTTPStatus.UNAUTHORIZED


def test_the_last_admin_cannot_be_removed(owner_client, owner, teammate):
    response = owner_client.post(f"/members/{owner.pk}/remove", follow=True)

    owner.refresh_from_db()
    assert owner.is_active
    assert LAST_ADMIN in response.content.decode()


def test_an_admin_may_remove_themselves_when_another_admin_remains(owner_client, owner):
    UserFactory(agency=owner.agency, email="dana@hdb.gov.sg", role=User.Role.ADMIN)

    response = owner_client.post(f"/members/{owner.pk}/remove")

    assert response["Location"] == "/login"
    owner.refresh_from_db()
    assert not owner.is_active


def test_member_forms_need_the_csrf_token(owner, teammate):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)

    assert client.post(f"/members/{teammate.pk}/remove").status_code == HTTPStatus.FORBIDDEN
    assert client.post("/members/invite", {"email": "x@hdb.gov.sg"}).status_code == 403
    teammate.refresh_from_db()
    assert teammate.is_active
