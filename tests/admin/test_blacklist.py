"""The global blacklist in the admin: add with a reason, remove with a reason, CSV import with
a per-row report, CSV export — each with its effect on the send API and its audit event."""

from __future__ import annotations

import csv
import io
from http import HTTPStatus

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import AuditEvent
from emails.models import BlacklistEntry, Email
from tests.factories import BlacklistEntryFactory

SEND = "/v1/transactional/email/send"
CHANGELIST = "/admin/emails/blacklistentry/"


def send(api, recipient="citizen@example.com", **extra):
    return api.client.post(
        SEND, {"recipient": recipient, "subject": "Hi", "body": "<p>Hi</p>", **extra}, format="json"
    )


def upload(content: str, name: str = "list.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode(), content_type="text/csv")


def test_staff_add_an_address_with_a_reason_and_sends_to_it_are_refused(staff_client, staff, api):
    response = staff_client.post(
        f"{CHANGELIST}add/", {"address": " Citizen@Example.COM ", "reason": "court order"}
    )

    assert response.status_code == HTTPStatus.FOUND
    entry = BlacklistEntry.objects.get()
    assert (entry.address, entry.reason, entry.source, entry.created_by) == (
        "citizen@example.com",
        "court order",
        "staff",
        staff,
    )
    event = AuditEvent.objects.get(action="blacklist.added")
    assert (event.actor, event.actor_kind, event.agency) == (staff, "staff", None)
    assert event.details["reason"] == "court order"

    refused = send(api)
    assert refused.status_code == HTTPStatus.BAD_REQUEST
    assert refused.json() == {
        "code": "invalid_template",
        "message": "Recipient email is blacklisted",
    }


def test_adding_needs_a_valid_address_and_a_reason(staff_client):
    for data in [{"address": "not-an-address", "reason": "x"}, {"address": "a@example.com"}]:
        response = staff_client.post(f"{CHANGELIST}add/", data)
        assert response.status_code == HTTPStatus.OK  # the form again, with its errors

    assert not BlacklistEntry.objects.exists()


def test_adding_an_address_already_listed_says_since_when(staff_client):
    BlacklistEntryFactory(address="a@example.com", source="hard_bounce")

    response = staff_client.post(f"{CHANGELIST}add/", {"address": "A@example.com", "reason": "x"})

    assert "a@example.com is already blacklisted (Hard bounce" in response.text
    assert BlacklistEntry.objects.get().source == "hard_bounce"


def test_the_list_shows_source_date_and_who_added_it(staff_client, staff):
    BlacklistEntryFactory(address="bounced@example.com", source="hard_bounce", reason="550")
    BlacklistEntryFactory(address="added@example.com", source="staff", created_by=staff)

    page = staff_client.get(CHANGELIST).text

    assert "Hard bounce" in page and "Staff" in page
    assert staff.email in page


def test_search_finds_an_address_or_its_beginning(staff_client):
    BlacklistEntryFactory(address="alice@example.com")
    BlacklistEntryFactory(address="bob@example.com")

    assert "alice@example.com" in staff_client.get(CHANGELIST, {"q": "ALICE@example.com"}).text
    found = staff_client.get(CHANGELIST, {"q": "bo"}).text
    assert "bob@example.com" in found and "alice@example.com" not in found


def test_staff_remove_an_address_with_a_reason_and_the_next_send_succeeds(staff_client, staff, api):
    entry = BlacklistEntryFactory(address="citizen@example.com", source="hard_bounce")
    assert send(api).status_code == HTTPStatus.BAD_REQUEST

    confirm = staff_client.get(f"{CHANGELIST}{entry.pk}/delete/")
    assert "citizen@example.com" in confirm.text and 'name="reason"' in confirm.text
    response = staff_client.post(f"{CHANGELIST}{entry.pk}/delete/", {"reason": "mailbox fixed"})

    assert response.status_code == HTTPStatus.FOUND
    assert not BlacklistEntry.objects.exists()
    event = AuditEvent.objects.get(action="blacklist.removed")
    assert (event.actor, event.actor_email) == (staff, staff.email)
    assert event.details["reason"] == "mailbox fixed"
    assert event.details["source"] == "hard_bounce"
    assert send(api).status_code == HTTPStatus.CREATED


def test_removing_without_a_reason_removes_nothing(staff_client):
    entry = BlacklistEntryFactory()

    response = staff_client.post(f"{CHANGELIST}{entry.pk}/delete/", {"reason": "  "})

    assert response.status_code == HTTPStatus.OK
    assert BlacklistEntry.objects.filter(pk=entry.pk).exists()
    assert not AuditEvent.objects.exists()


def test_the_remove_action_asks_for_a_reason_then_removes_each_entry(staff_client, staff):
    entries = [BlacklistEntryFactory() for _ in range(3)]
    selected = [entries[0].pk, entries[1].pk]

    ask = staff_client.post(
        CHANGELIST, {"action": "remove_selected", "_selected_action": selected, "index": "0"}
    )
    assert ask.status_code == HTTPStatus.OK and 'name="reason"' in ask.text
    done = staff_client.post(
        CHANGELIST,
        {"action": "remove_selected", "_selected_action": selected, "reason": "cleanup"},
    )

    assert done.status_code == HTTPStatus.FOUND
    assert list(BlacklistEntry.objects.all()) == [entries[2]]
    events = AuditEvent.objects.filter(action="blacklist.removed", actor=staff)
    assert events.count() == 2
    assert {e.details["reason"] for e in events} == {"cleanup"}


def test_django_delete_selected_is_not_offered(staff_client):
    BlacklistEntryFactory()

    page = staff_client.get(CHANGELIST).text

    assert "delete_selected" not in page
    assert "remove_selected" in page


# --- CSV ----------------------------------------------------------------------------------------


def test_the_changelist_links_to_import_and_export(staff_client):
    page = staff_client.get(CHANGELIST).text

    assert f'href="{CHANGELIST}import/"' in page
    assert f'href="{CHANGELIST}export/"' in page


def test_import_adds_good_rows_and_reports_every_rejected_one(staff_client, staff, api):
    BlacklistEntryFactory(address="listed@example.com")
    content = "\n".join(
        [
            "Citizen@Example.com",
            "not an address",
            "citizen@EXAMPLE.com",
            "listed@example.com",
            "",
            "second@example.org",
            "Name <third@example.org>",
        ]
    )

    response = staff_client.post(
        f"{CHANGELIST}import/", {"file": upload(content), "reason": "from the helpdesk"}
    )

    assert response.status_code == HTTPStatus.OK
    added = BlacklistEntry.objects.filter(reason="from the helpdesk")
    assert sorted(added.values_list("address", flat=True)) == [
        "citizen@example.com",
        "second@example.org",
    ]
    assert set(added.values_list("created_by", flat=True)) == {staff.pk}
    report = response.context["report"]
    assert [(r.line, r.value, r.reason) for r in report.rejected] == [
        (2, "not an address", "not a valid email address"),
        (3, "citizen@example.com", "duplicate of line 1"),
        (4, "listed@example.com", "already blacklisted"),
        (7, "Name <third@example.org>", "not a valid email address"),
    ]
    assert "duplicate of line 1" in response.text
    event = AuditEvent.objects.get(action="blacklist.imported")
    assert event.actor == staff
    assert event.details["added"] == 2 and event.details["rejected"] == 4
    assert send(api).status_code == HTTPStatus.BAD_REQUEST


def test_an_unreadable_file_is_refused_whole(staff_client):
    response = staff_client.post(
        f"{CHANGELIST}import/",
        {
            "file": SimpleUploadedFile("x.csv", b"\xff\xfe\x00a\x00@"),
            "reason": "r",
        },
    )

    assert response.status_code == HTTPStatus.OK
    assert "not UTF-8" in response.text
    assert not BlacklistEntry.objects.exists()
    assert not AuditEvent.objects.exists()


def test_export_writes_every_entry_with_its_source_and_author(staff_client, staff):
    BlacklistEntryFactory(address="b@example.com", source="hard_bounce", reason="550 gone")
    BlacklistEntryFactory(address="a@example.com", created_by=staff, reason="=HYPERLINK(1)")

    response = staff_client.get(f"{CHANGELIST}export/")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["address", "source", "reason", "created_at", "created_by"]
    assert [row[:3] + row[4:] for row in rows[1:]] == [
        ["a@example.com", "staff", "'=HYPERLINK(1)", staff.email],  # no formula in a spreadsheet
        ["b@example.com", "hard_bounce", "550 gone", ""],
    ]


def test_an_export_imports_back_with_its_reasons(staff_client):
    BlacklistEntryFactory(address="a@example.com", reason="=not a formula")
    exported = b"".join(staff_client.get(f"{CHANGELIST}export/").streaming_content).decode()
    BlacklistEntry.objects.all().delete()

    staff_client.post(f"{CHANGELIST}import/", {"file": upload(exported), "reason": "restore"})

    assert list(BlacklistEntry.objects.values_list("address", "reason")) == [
        ("a@example.com", "=not a formula")
    ]


def test_the_export_action_writes_the_selected_entries(staff_client):
    keep = BlacklistEntryFactory(address="keep@example.com")
    BlacklistEntryFactory(address="other@example.com")

    response = staff_client.post(
        CHANGELIST, {"action": "export_selected", "_selected_action": [keep.pk], "index": "0"}
    )

    content = b"".join(response.streaming_content).decode()
    assert "keep@example.com" in content and "other@example.com" not in content


@pytest.mark.parametrize("address", ["cc@example.com"])
def test_a_blacklisted_cc_is_dropped_and_the_email_still_goes(staff_client, api, address):
    staff_client.post(f"{CHANGELIST}add/", {"address": address, "reason": "r"})

    response = send(api, cc=[address, "other@example.com"])

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["cc"] == ["other@example.com"]
    assert Email.objects.get().recipients.get(address=address).error_code == (
        "Error 400: Blacklisted recipient"
    )
