from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
import time_machine
from django.utils import timezone

from emails.charts import line_chart
from emails.portal_selectors import daily_outcomes, status_counts
from tests.factories import EmailFactory

pytestmark = pytest.mark.django_db


def counts(response, key: str) -> dict:
    window = next(w for w in response.context["windows"] if w["key"] == key)
    return {"total": window["total"], **window["by_status"]}


def test_it_counts_emails_by_status_for_each_window(owner_client, owner, outsider):
    now = timezone.now()
    EmailFactory(agency=owner.agency, status="DELIVERED", created_at=now - timedelta(hours=1))
    EmailFactory(agency=owner.agency, status="BOUNCED", created_at=now - timedelta(days=2))
    EmailFactory(agency=owner.agency, status="DELIVERED", created_at=now - timedelta(days=20))
    EmailFactory(agency=owner.agency, status="OPENED", created_at=now - timedelta(days=40))
    EmailFactory(agency=outsider.agency, status="DELIVERED", created_at=now)

    response = owner_client.get("/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "dashboard"
    day, week, month = (counts(response, key) for key in ("24h", "7d", "30d"))
    assert (day["total"], day["DELIVERED"], day["BOUNCED"]) == (1, 1, 0)
    assert (week["total"], week["DELIVERED"], week["BOUNCED"]) == (2, 1, 1)
    assert (month["total"], month["DELIVERED"], month["OPENED"]) == (3, 2, 0)


def test_a_teammate_sees_the_same_dashboard(teammate_client, owner):
    EmailFactory(agency=owner.agency, status="DELIVERED")

    response = teammate_client.get("/")

    assert counts(response, "24h")["DELIVERED"] == 1


def test_an_outsider_sees_none_of_the_agencys_emails(outsider_client, owner):
    EmailFactory(agency=owner.agency, status="DELIVERED")

    response = outsider_client.get("/")

    assert counts(response, "30d")["total"] == 0
    assert not response.context["has_emails"]


def test_the_chart_is_server_rendered_svg_with_a_table_fallback(owner_client, owner):
    now = timezone.now()
    EmailFactory(
        agency=owner.agency,
        status="OPENED",
        accepted_at=now,
        delivered_at=now,
        opened_at=now,
        created_at=now,
    )
    EmailFactory(agency=owner.agency, status="BOUNCED", accepted_at=now, created_at=now)

    response = owner_client.get("/")
    html = response.content.decode()

    assert '<svg class="chart"' in html
    assert html.count('<polyline class="line series-') == 5
    assert "<script" not in html.split("</head>")[1]
    assert "Show the numbers as a table" in html
    today = response.context["days"][-1]
    assert today.created == 2
    assert today.counts == {
        "accepted": 2,
        "delivered": 1,
        "opened": 1,
        "bounced": 1,
        "complained": 0,
    }


def test_the_daily_series_covers_30_days_oldest_first_without_gaps(owner):
    now = timezone.now()
    EmailFactory(agency=owner.agency, created_at=now - timedelta(days=5), accepted_at=now)

    days = daily_outcomes(agency=owner.agency, now=now)

    assert len(days) == 30
    assert days[-1].day == timezone.localdate(now)
    assert days[0].day == timezone.localdate(now) - timedelta(days=29)
    assert [d.counts["accepted"] for d in days].count(1) == 1
    assert days[-6].counts["accepted"] == 1


def test_the_chart_scales_to_round_numbers(owner):
    now = timezone.now()
    EmailFactory.create_batch(7, agency=owner.agency, accepted_at=now, created_at=now)

    chart = line_chart(daily_outcomes(agency=owner.agency, now=now))

    assert [tick.label for tick in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    accepted = next(s for s in chart.series if s.name == "accepted")
    assert accepted.total == 7
    assert accepted.points[-1].y < accepted.points[0].y  # higher value, higher on the chart
    assert chart.x_ticks[-1].anchor == "end"


def test_status_counts_take_one_query(owner, django_assert_num_queries):
    EmailFactory.create_batch(3, agency=owner.agency)

    with django_assert_num_queries(1):
        status_counts(agency=owner.agency)


def test_a_new_agency_sees_how_to_send_its_first_email(owner_client, owner, settings):
    settings.PUBLIC_BASE_URL = "https://postman.example.gov.sg"

    html = owner_client.get("/").content.decode()

    assert "Send your first email" in html
    assert "curl -sS https://postman.example.gov.sg/v1/transactional/email/send" in html
    assert 'data-copy="#first-email-curl"' in html


def test_the_first_email_help_goes_away_once_there_is_email(owner_client, owner):
    EmailFactory(agency=owner.agency, created_at=timezone.now() - timedelta(days=90))

    assert "Send your first email" not in owner_client.get("/").content.decode()


def test_anonymous_visitors_are_sent_to_log_in(client):
    assert client.get("/")["Location"] == "/login?next=/"


def test_a_large_agencys_numbers_are_reused_for_a_minute(owner_client, owner, monkeypatch):
    from emails import portal_selectors

    monkeypatch.setattr(portal_selectors, "DASHBOARD_CACHE_FROM", 2)
    EmailFactory.create_batch(2, agency=owner.agency)
    first = owner_client.get("/")
    EmailFactory(agency=owner.agency)

    second = owner_client.get("/")
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        later = owner_client.get("/")

    assert counts(first, "24h")["total"] == 2
    assert counts(second, "24h")["total"] == 2
    assert "updated every minute" in second.content.decode()
    assert counts(later, "24h")["total"] == 3


def test_a_small_agency_always_sees_live_numbers(owner_client, owner):
    owner_client.get("/")
    EmailFactory(agency=owner.agency)

    assert counts(owner_client.get("/"), "24h")["total"] == 1
