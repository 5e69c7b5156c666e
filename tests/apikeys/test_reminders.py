"""Expiry reminders: 28, 14, 3 and 1 days before, through the service's own pipeline, once."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.utils import timezone
from django_q.models import Schedule

from apikeys.models import ApiKeyReminder
from apikeys.services import apikey_create, apikey_revoke, apikey_send_expiry_reminders
from emails.models import Email


def run_at(moment) -> int:
    with time_machine.travel(moment, tick=False):
        return apikey_send_expiry_reminders()


def test_reminders_go_out_at_each_threshold_once(owner, django_capture_on_commit_callbacks):
    created = apikey_create(
        owner=owner, label="Payments", contacts=["ops@hdb.gov.sg", "dev@hdb.gov.sg"]
    )
    expiry = created.key.valid_until

    assert run_at(expiry - timedelta(days=29)) == 0
    with django_capture_on_commit_callbacks() as queued:
        assert run_at(expiry - timedelta(days=28)) == 1
    assert len(queued) == 1  # handed to the delivery queue like any email
    assert run_at(expiry - timedelta(days=27)) == 0  # the double / next-day run sends nothing
    assert run_at(expiry - timedelta(days=14)) == 1
    assert run_at(expiry - timedelta(days=14)) == 0
    assert run_at(expiry - timedelta(days=3)) == 1
    assert run_at(expiry - timedelta(hours=23)) == 1
    assert run_at(expiry - timedelta(hours=1)) == 0
    assert run_at(expiry + timedelta(days=1)) == 0

    tags = list(Email.objects.order_by("pk").values_list("tag", flat=True))
    assert tags == [
        "API key expiry four weeks",
        "API key expiry two weeks",
        "API key expiry three days",
        "API key expiry one day",
    ]
    email = Email.objects.first()
    assert email.recipient == "dev@hdb.gov.sg" and email.cc == ["ops@hdb.gov.sg"]
    assert email.agency == owner.agency
    assert "Payments" in email.subject and "four weeks" in email.subject
    assert created.key.last_five in email.html
    assert created.plaintext not in email.html


def test_a_missed_day_sends_the_nearest_reminder_only(owner):
    created = apikey_create(owner=owner, label="x")

    assert run_at(created.key.valid_until - timedelta(days=10)) == 1

    assert list(ApiKeyReminder.objects.values_list("days_before", flat=True)) == [14]
    assert run_at(created.key.valid_until - timedelta(days=20)) == 0


def test_revoked_and_expired_keys_get_no_reminder(owner):
    revoked = apikey_create(owner=owner, label="revoked")
    apikey_revoke(key=revoked.key)
    expired = apikey_create(owner=owner, label="expired", valid_for=timedelta(days=1))

    assert run_at(revoked.key.valid_until - timedelta(days=1)) == 0
    assert run_at(expired.key.valid_until + timedelta(seconds=1)) == 0
    assert not Email.objects.exists()


def test_reminders_are_scheduled_daily(db):
    schedule = Schedule.objects.get(name="apikeys.expiry_reminders")

    assert schedule.func == "apikeys.tasks.send_expiry_reminders"
    assert schedule.schedule_type == Schedule.DAILY
    assert schedule.next_run > timezone.now() - timedelta(days=1)
