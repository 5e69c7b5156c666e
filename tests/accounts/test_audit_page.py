from __future__ import annotations

from datetime import datetime, timedelta
from http import HTTPStatus

import pytest
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import AuditEvent

pytestmark = pytest.mark.django_db


def record(agency, *, action="apikey.created", actor=None, when=None) -> AuditEvent:
    event = audit_record(actor=actor or Actor.system(), action=action, agency=agency)
    if when is not None:
        AuditEvent.objects.filter(pk=event.pk).update(created_at=when)
    return event


def shown(response) -> list[int]:
    return [event.pk for event in response.context["page"].rows]


def test_an_admin_sees_the_agencys_audit_log_newest_first(owner_client, owner, outsider):
    first = record(owner.agency, actor=Actor.of(owner))
    second = record(owner.agency, action="member.invited")
    record(outsider.agency, action="apikey.revoked", actor=Actor.of(outsider))

    response = owner_client.get("/audit/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "audit"
    assert shown(response) == [second.pk, first.pk]
    assert "apikey.revoked" not in response.content.decode()


def test_a_member_cannot_see_the_audit_log(teammate_client):
    assert teammate_client.get("/audit/").status_code == HTTPStatus.FORBIDDEN


def test_another_agencys_admin_sees_none_of_it(outsider_client, owner):
    record(owner.agency, actor=Actor.of(owner))

    response = outsider_client.get("/audit/")

    assert shown(response) == []
    assert owner.email not in response.content.decode()


def test_it_filters_by_actor_action_and_date(owner_client, owner, teammate):
    now = timezone.now()
    by_owner = record(owner.agency, actor=Actor.of(owner), when=now - timedelta(days=3))
    by_teammate = record(owner.agency, actor=Actor.of(teammate), action="apikey.revoked")
    old = record(owner.agency, actor=Actor.of(teammate), when=now - timedelta(days=40))

    by_actor = owner_client.get("/audit/", {"actor": "BOB@hdb.gov.sg"})
    by_action = owner_client.get("/audit/", {"action": "apikey.revoked"})
    day = timezone.localdate(now - timedelta(days=3)).isoformat()
    by_day = owner_client.get("/audit/", {"date_from": day, "date_to": day})
    since = owner_client.get("/audit/", {"date_from": (now - timedelta(days=30)).date()})

    assert shown(by_actor) == [by_teammate.pk, old.pk]
    assert shown(by_action) == [by_teammate.pk]
    assert shown(by_day) == [by_owner.pk]
    assert old.pk not in shown(since)
    assert "bob@hdb.gov.sg" in by_actor.context["actors"]


def test_bad_filter_values_are_shown_not_crashed_on(owner_client, owner):
    record(owner.agency)

    response = owner_client.get("/audit/", {"date_from": "yesterday", "action": "nope"})

    assert response.status_code == HTTPStatus.OK
    assert response.context["form"].errors


def test_it_pages_with_cursors(owner_client, owner):
    start = timezone.make_aware(datetime(2026, 1, 1))
    events = [record(owner.agency, when=start + timedelta(minutes=i)) for i in range(120)]
    newest_first = [event.pk for event in reversed(events)]

    first = owner_client.get("/audit/")
    second = owner_client.get("/audit/", {"after": first.context["page"].next_cursor})
    third = owner_client.get("/audit/", {"after": second.context["page"].next_cursor})
    back = owner_client.get("/audit/", {"before": third.context["page"].previous_cursor})

    assert shown(first) == newest_first[:50]
    assert shown(second) == newest_first[50:100]
    assert shown(third) == newest_first[100:]
    assert third.context["page"].next_cursor is None
    assert shown(back) == newest_first[50:100]
    assert "after=" in first.content.decode()


def test_a_tampered_cursor_shows_the_first_page(owner_client, owner):
    record(owner.agency)

    response = owner_client.get("/audit/", {"after": "not-a-cursor!!"})

    assert response.status_code == HTTPStatus.OK
    assert len(shown(response)) == 1
