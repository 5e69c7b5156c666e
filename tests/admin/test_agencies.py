"""Agencies in the admin: domains, rate limit, suspension — every change audited as staff."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from accounts.models import Agency, AgencyDomain, AuditEvent
from emails.models import Email

SEND = "/v1/transactional/email/send"
SUSPENDED = {"code": "unauthorized", "message": "Agency is suspended"}


def change_form(agency: Agency, **overrides) -> dict[str, str]:
    """The agency's change form as the browser posts it, with its domains inline."""
    domains = list(agency.domains.order_by("pk"))
    data = {
        "name": agency.name,
        "rate_limit_per_second": str(agency.rate_limit_per_second),
        "domains-TOTAL_FORMS": str(len(domains)),
        "domains-INITIAL_FORMS": str(len(domains)),
        "domains-MIN_NUM_FORMS": "0",
        "domains-MAX_NUM_FORMS": "1000",
    }
    if agency.is_active:
        data["is_active"] = "on"
    for i, domain in enumerate(domains):
        data[f"domains-{i}-id"] = str(domain.pk)
        data[f"domains-{i}-agency"] = str(agency.pk)
        data[f"domains-{i}-domain"] = domain.domain
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def post_change(staff_client, agency, **overrides):
    return staff_client.post(
        f"/admin/accounts/agency/{agency.pk}/change/", change_form(agency, **overrides)
    )


def test_staff_change_the_rate_limit_and_the_audit_log_says_who(staff_client, staff, agency):
    response = post_change(staff_client, agency, rate_limit_per_second="50")

    assert response.status_code == HTTPStatus.FOUND
    agency.refresh_from_db()
    assert agency.rate_limit_per_second == 50
    event = AuditEvent.objects.get(action="agency.changed")
    assert (event.actor, event.actor_kind, event.actor_email) == (staff, "staff", staff.email)
    assert event.agency == agency
    assert event.ip_address == "127.0.0.1"
    assert event.details == {"changes": {"rate_limit_per_second": {"from": 10, "to": 50}}}


def test_suspending_in_the_change_form_is_audited_as_a_suspension(staff_client, staff, agency):
    response = post_change(staff_client, agency, is_active=None)

    assert response.status_code == HTTPStatus.FOUND
    agency.refresh_from_db()
    assert not agency.is_active
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.agency) == ("agency.suspended", staff, agency)


def test_saving_without_a_change_writes_no_audit_event(staff_client, agency):
    post_change(staff_client, agency)

    assert not AuditEvent.objects.exists()


def test_staff_add_and_remove_an_agency_domain(staff_client, staff, agency):
    domain = agency.domains.get()
    response = post_change(
        staff_client,
        agency,
        **{
            "domains-TOTAL_FORMS": "2",
            "domains-0-DELETE": "on",
            "domains-1-agency": str(agency.pk),
            "domains-1-domain": " Mail.HDB.gov.sg ",
        },
    )

    assert response.status_code == HTTPStatus.FOUND
    assert list(agency.domains.values_list("domain", flat=True)) == ["mail.hdb.gov.sg"]
    events = {e.action: e for e in AuditEvent.objects.all()}
    assert set(events) == {"agency_domain.created", "agency_domain.deleted"}
    assert events["agency_domain.created"].details["values"]["domain"] == "mail.hdb.gov.sg"
    assert events["agency_domain.deleted"].details["values"]["domain"] == domain.domain
    assert all(e.actor == staff and e.agency == agency for e in events.values())


def test_the_suspend_and_reactivate_actions_are_audited(staff_client, staff, agency):
    url = "/admin/accounts/agency/"
    staff_client.post(url, {"action": "suspend", "_selected_action": [agency.pk]})
    agency.refresh_from_db()
    assert not agency.is_active

    staff_client.post(url, {"action": "reactivate", "_selected_action": [agency.pk]})
    agency.refresh_from_db()
    assert agency.is_active

    actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor", "agency"))
    assert actions == [
        ("agency.suspended", staff.pk, agency.pk),
        ("agency.reactivated", staff.pk, agency.pk),
    ]


def test_agencies_cannot_be_deleted(staff_client, agency):
    response = staff_client.post(f"/admin/accounts/agency/{agency.pk}/delete/", {"post": "yes"})

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert Agency.objects.filter(pk=agency.pk).exists()


def test_staff_search_agencies_by_domain(staff_client, agency):
    response = staff_client.get("/admin/accounts/agency/", {"q": "hdb.gov"})

    assert agency.name in response.content.decode()
    assert AgencyDomain.objects.filter(agency=agency).exists()


# --- a suspended agency's keys ----------------------------------------------------------------


@pytest.fixture
def suspended(api):
    Agency.objects.filter(pk=api.agency.pk).update(is_active=False)
    return api


def test_a_suspended_agency_cannot_send(suspended):
    response = suspended.client.post(
        SEND, {"recipient": "a@example.com", "subject": "s", "body": "b"}, format="json"
    )

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == SUSPENDED
    assert not Email.objects.exists()


@pytest.mark.parametrize("path", ["/v1/transactional/email", "/v1/transactional/email/1"])
def test_a_suspended_agency_cannot_read(suspended, path):
    response = suspended.client.get(path)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == SUSPENDED


def test_the_suspension_check_costs_no_extra_query(suspended, django_assert_num_queries):
    with django_assert_num_queries(1):  # the key with its agency; no last-used write needed
        suspended.client.get("/v1/transactional/email")


def test_another_agency_keeps_sending_while_one_is_suspended(suspended, outsider_api):
    response = outsider_api.client.post(
        SEND, {"recipient": "a@example.com", "subject": "s", "body": "b"}, format="json"
    )

    assert response.status_code == HTTPStatus.CREATED


def test_a_reactivated_agency_sends_again(suspended, staff_client):
    staff_client.post(
        "/admin/accounts/agency/",
        {"action": "reactivate", "_selected_action": [suspended.agency.pk]},
    )

    response = suspended.client.post(
        SEND, {"recipient": "a@example.com", "subject": "s", "body": "b"}, format="json"
    )

    assert response.status_code == HTTPStatus.CREATED
