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
    blacklist("remove", "someone@example.com")

    events = list(AuditEvent.objects.order_by("id").values_list("action", "agency", "details"))
    assert events == [
        ("blacklist.added", None, {"source": "staff", "reason": "asked to stop"}),
        ("blacklist.removed", None, {"address": "someone@example.com"}),
    ]
