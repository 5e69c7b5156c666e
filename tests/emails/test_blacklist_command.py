from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent
from emails.models import BlacklistEntry
from tests.factories import BlacklistEntryFactory

pytestmark = pytest.mark.django_db


def blacklist(*args: str) -> list[str]:
    out = StringIO()
    call_command("blacklist", *args, stdout=out)
    return out.getvalue().splitlines()


def test_add_stores_the_lowercased_address_with_its_reason():
    lines = blacklist("add", " Someone@Example.COM ", "--reason", "asked to stop")

    entry = BlacklistEntry.objects.get()
    assert entry.address == "someone@example.com"
    assert entry.reason == "asked to stop"
    assert entry.source == BlacklistEntry.Source.STAFF
    assert lines == ["Blacklisted someone@example.com."]


def test_adding_an_address_twice_keeps_the_first_entry():
    BlacklistEntryFactory(
        address="someone@example.com", source=BlacklistEntry.Source.HARD_BOUNCE, reason="550"
    )

    lines = blacklist("add", "SOMEONE@example.com", "--reason", "again")

    entry = BlacklistEntry.objects.get()
    assert (entry.source, entry.reason) == (BlacklistEntry.Source.HARD_BOUNCE, "550")
    assert lines[0].startswith("someone@example.com was already blacklisted (Hard bounce")


def test_remove_takes_the_address_off_the_blacklist():
    BlacklistEntryFactory(address="someone@example.com")
    BlacklistEntryFactory(address="other@example.com")

    lines = blacklist("remove", "Someone@Example.com")

    assert list(BlacklistEntry.objects.values_list("address", flat=True)) == ["other@example.com"]
    assert lines == ["Removed someone@example.com."]


def test_removing_an_address_that_is_not_blacklisted_fails():
    BlacklistEntryFactory(address="other@example.com")

    with pytest.raises(CommandError, match=r"someone@example.com is not blacklisted"):
        blacklist("remove", "someone@example.com")

    assert BlacklistEntry.objects.count() == 1


def test_list_prints_one_address_per_line_sorted():
    for address in ["zed@example.com", "amy@example.com", "kim@example.org"]:
        BlacklistEntryFactory(address=address)

    assert blacklist("list") == ["amy@example.com", "kim@example.org", "zed@example.com"]


def test_list_of_an_empty_blacklist_prints_nothing():
    assert blacklist("list") == []


@pytest.mark.parametrize("action", ["add", "remove"])
@pytest.mark.parametrize("address", ["not-an-address", "Name <a@example.com>", "a@localhost"])
def test_it_refuses_an_invalid_address(action, address):
    with pytest.raises(CommandError, match="is not a valid email address"):
        blacklist(action, address)

    assert not BlacklistEntry.objects.exists()


@pytest.mark.parametrize(
    "args", [[], ["purge"], ["add"], ["remove"], ["list", "extra@example.com"]]
)
def test_it_refuses_a_bad_command_line(args):
    with pytest.raises(CommandError):
        blacklist(*args)


def test_adding_and_removing_are_audited():
    blacklist("add", "someone@example.com", "--reason", "asked to stop")
    blacklist("remove", "someone@example.com", "--reason", "asked to start again")

    added, removed = AuditEvent.objects.order_by("id")
    assert (added.action, added.agency, added.actor_kind) == ("blacklist.added", None, "system")
    assert added.details == {
        "address": "someone@example.com",
        "source": "staff",
        "reason": "asked to stop",
    }
    assert (removed.action, removed.agency) == ("blacklist.removed", None)
    assert removed.details["address"] == "someone@example.com"
    assert removed.details["reason"] == "asked to start again"
    assert removed.details["added_reason"] == "asked to stop"


# --- import and export ------------------------------------------------------------------------


def test_import_adds_each_valid_row_and_reports_the_others(tmp_path):
    BlacklistEntryFactory(address="listed@example.com")
    path = tmp_path / "list.csv"
    path.write_text("A@Example.com\nlisted@example.com\na@example.COM\nb@example.org\n")

    lines = blacklist("import", str(path), "--reason", "helpdesk ticket")

    assert sorted(BlacklistEntry.objects.values_list("address", "reason")) == [
        ("a@example.com", "helpdesk ticket"),
        ("b@example.org", "helpdesk ticket"),
        ("listed@example.com", ""),
    ]
    assert lines == [
        "line 2: listed@example.com: already blacklisted",
        "line 3: a@example.com: duplicate of line 1",
        "Added 2 of 4 rows; 2 not added.",
    ]
    event = AuditEvent.objects.get(action="blacklist.imported")
    assert (event.actor_kind, event.details["added"]) == ("system", 2)


def test_importing_the_same_file_again_succeeds(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("a@example.com\n")
    blacklist("import", str(path))

    lines = blacklist("import", str(path))

    assert lines[-1] == "Added 0 of 1 rows; 1 not added."


def test_import_fails_when_a_row_is_malformed_but_keeps_the_good_rows(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("a@example.com\nnot an address\n")
    out = StringIO()

    with pytest.raises(CommandError, match="1 rows are not valid email addresses"):
        call_command("blacklist", "import", str(path), stdout=out)

    assert "line 2: not an address: not a valid email address" in out.getvalue()
    assert list(BlacklistEntry.objects.values_list("address", flat=True)) == ["a@example.com"]


def test_import_of_a_missing_file_fails(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        blacklist("import", str(tmp_path / "nope.csv"))


def test_export_writes_csv_to_stdout_and_to_a_file(tmp_path):
    BlacklistEntryFactory(address="b@example.com", source="hard_bounce", reason="550")
    BlacklistEntryFactory(address="a@example.com")

    lines = blacklist("export")
    blacklist("export", str(tmp_path / "out.csv"))

    assert lines[0] == "address,source,reason,created_at,created_by"
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["a@example.com", "staff", ""],
        ["b@example.com", "hard_bounce", "550"],
    ]
    assert (tmp_path / "out.csv").read_text().splitlines() == lines


def test_an_export_imports_back_into_an_empty_blacklist(tmp_path):
    BlacklistEntryFactory(address="a@example.com", reason="why not")
    blacklist("export", str(tmp_path / "out.csv"))
    BlacklistEntry.objects.all().delete()

    blacklist("import", str(tmp_path / "out.csv"))

    assert list(BlacklistEntry.objects.values_list("address", "reason")) == [
        ("a@example.com", "why not")
    ]
