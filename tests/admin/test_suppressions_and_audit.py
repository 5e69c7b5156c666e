"""Agencies' suppression lists and the audit log, as staff see them."""

from __future__ import annotations

from http import HTTPStatus

from accounts.audit import Actor, audit_record
from accounts.models import AuditEvent
from emails.models import Suppression
from tests.factories import AgencyFactory

SEND = "/v1/transactional/email/send"
SUPPRESSIONS = "/admin/emails/suppression/"


def suppress(agency, address, **fields):
    return Suppression.objects.create(agency=agency, address=address, source="admin", **fields)


def test_staff_see_every_agency_list_and_filter_by_agency(staff_client, agency):
    other = AgencyFactory(name="Manpower")
    suppress(agency, "ours@example.com")
    suppress(other, "theirs@example.com")

    everything = staff_client.get(SUPPRESSIONS).text
    filtered = staff_client.get(SUPPRESSIONS, {"agency__id__exact": agency.pk}).text

    assert "ours@example.com" in everything and "theirs@example.com" in everything
    assert "ours@example.com" in filtered and "theirs@example.com" not in filtered


def test_staff_export_selected_entries_with_their_agency_first(staff_client, agency):
    other = AgencyFactory(name="Manpower")
    ours = suppress(agency, "ours@example.com", reason="asked")
    theirs = suppress(other, "theirs@example.com")
    suppress(other, "left@example.com")

    response = staff_client.post(
        SUPPRESSIONS,
        {"action": "export_selected", "_selected_action": [ours.pk, theirs.pk], "index": "0"},
    )

    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "agency,address,source,reason,created_at,created_by"
    assert [line.split(",")[:4] for line in lines[1:]] == [
        [agency.name, "ours@example.com", "admin", "asked"],
        ["Manpower", "theirs@example.com", "admin", ""],
    ]


def test_suppressions_are_read_only_for_staff(staff_client, agency):
    entry = suppress(agency, "a@example.com")

    change = staff_client.post(f"{SUPPRESSIONS}{entry.pk}/change/", {"reason": "changed"})

    assert change.status_code == HTTPStatus.FORBIDDEN
    assert staff_client.get(f"{SUPPRESSIONS}add/").status_code == HTTPStatus.FORBIDDEN


def test_staff_remove_a_suppression_with_a_reason_audited_under_the_agency(
    staff_client, staff, api
):
    entry = suppress(api.agency, "citizen@example.com", reason="asked")
    body = {"recipient": "citizen@example.com", "subject": "s", "body": "b"}
    assert api.client.post(SEND, body, format="json").status_code == HTTPStatus.BAD_REQUEST

    response = staff_client.post(
        f"{SUPPRESSIONS}{entry.pk}/delete/", {"reason": "agency ticket 42"}
    )

    assert response.status_code == HTTPStatus.FOUND
    assert not Suppression.objects.exists()
    event = AuditEvent.objects.get(action="suppression.removed")
    assert (event.actor, event.actor_kind, event.agency) == (staff, "staff", api.agency)
    assert event.details["reason"] == "agency ticket 42"
    assert api.client.post(SEND, body, format="json").status_code == HTTPStatus.CREATED


def test_the_audit_log_is_read_only(staff_client, agency):
    event = audit_record(actor=Actor.system(), action="apikey.created", agency=agency)

    change = staff_client.post(f"/admin/accounts/auditevent/{event.pk}/change/", {"action": "x"})
    delete = staff_client.post(f"/admin/accounts/auditevent/{event.pk}/delete/", {"post": "yes"})

    assert change.status_code == HTTPStatus.FORBIDDEN
    assert delete.status_code == HTTPStatus.FORBIDDEN
    assert AuditEvent.objects.get(pk=event.pk).action == "apikey.created"


def test_the_audit_log_filters_by_agency_actor_kind_and_action(staff_client, staff, agency):
    other = AgencyFactory()
    audit_record(actor=Actor.system(), action="apikey.created", agency=agency, details={"n": 1})
    audit_record(actor=Actor.of(staff), action="apikey.revoked", agency=agency, details={"n": 2})
    audit_record(actor=Actor.system(), action="member.created", agency=other, details={"n": 3})
    url = "/admin/accounts/auditevent/"

    def shown(**params) -> set[str]:
        page = staff_client.get(url, params).text
        actions = ("apikey.created", "apikey.revoked", "member.created")
        # The action column of the result rows (the filter's own links list every action).
        return {action for action in actions if f'<td class="field-action">{action}<' in page}

    assert shown() == {"apikey.created", "apikey.revoked", "member.created"}
    assert shown(agency__id__exact=agency.pk) == {"apikey.created", "apikey.revoked"}
    assert shown(actor_kind__exact="staff") == {"apikey.revoked"}
    assert shown(action="apikey.created") == {"apikey.created"}
    assert shown(action="apikey.*") == {"apikey.created", "apikey.revoked"}
