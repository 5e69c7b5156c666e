"""Emails in the admin: read-only, found by id, recipient or tag, filtered, with their
recipients and events inline — and fast whatever the size of the table."""

from __future__ import annotations

import re
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from emails.models import Email, EmailEvent
from tests.factories import AgencyFactory, EmailFactory

CHANGELIST = "/admin/emails/email/"


def ids_on(staff_client, **params) -> set[int]:
    response = staff_client.get(CHANGELIST, params)
    assert response.status_code == HTTPStatus.OK
    return {int(pk) for pk in re.findall(r"/admin/emails/email/(\d+)/change/", response.text)}


@pytest.fixture
def emails(agency):
    other = AgencyFactory()
    return {
        "alice": EmailFactory(agency=agency, recipient="alice@example.com", tag="otp"),
        "alicia": EmailFactory(agency=agency, recipient="alicia@example.com", tag="2024"),
        "bob": EmailFactory(
            agency=other, recipient="bob@example.org", status="BOUNCED", tag="reminder"
        ),
        "old": EmailFactory(
            agency=other,
            recipient="old@example.org",
            created_at=timezone.now() - timedelta(days=400),
        ),
    }


def test_search_by_id(staff_client, emails):
    assert ids_on(staff_client, q=str(emails["bob"].pk)) == {emails["bob"].pk}


def test_search_by_whole_recipient_is_exact_and_case_insensitive(staff_client, emails):
    assert ids_on(staff_client, q=" Alice@Example.COM ") == {emails["alice"].pk}


def test_search_by_the_beginning_of_a_recipient(staff_client, emails):
    assert ids_on(staff_client, q="ali") == set()  # no "@": a tag, not an address
    assert ids_on(staff_client, q="alic") == set()
    found = ids_on(staff_client, q="alic@") | ids_on(staff_client, q="alicia@ex")
    assert found == {emails["alicia"].pk}


def test_search_by_tag(staff_client, emails):
    assert ids_on(staff_client, q="otp") == {emails["alice"].pk}
    assert ids_on(staff_client, q="tag:2024") == {emails["alicia"].pk}
    assert ids_on(staff_client, q="2024") == set()  # digits are an id


def test_search_never_uses_like_on_every_column(staff_client, emails):
    with CaptureQueriesContext(connection) as queries:
        staff_client.get(CHANGELIST, {"q": "alice@example.com"})

    email_queries = [q["sql"] for q in queries if 'FROM "emails_email"' in q["sql"]]
    assert email_queries
    assert all("LIKE" not in sql and "UPPER" not in sql for sql in email_queries)


def test_filters_by_status_agency_and_date(staff_client, emails, agency):
    assert ids_on(staff_client, status__exact="BOUNCED") == {emails["bob"].pk}
    assert ids_on(staff_client, agency__id__exact=agency.pk) == {
        emails["alice"].pk,
        emails["alicia"].pk,
    }
    # As the "Past 7 days" link has it: midnight, local time, with its offset.
    since = (timezone.localtime() - timedelta(days=7)).replace(hour=0, minute=0).isoformat()
    assert emails["old"].pk not in ids_on(staff_client, created_at__gte=since)
    assert emails["bob"].pk in ids_on(staff_client, created_at__gte=since)


def test_the_changelist_costs_the_same_queries_for_1_or_30_emails(staff_client, agency):
    EmailFactory(agency=agency)
    with CaptureQueriesContext(connection) as one:
        staff_client.get(CHANGELIST)
    EmailFactory.create_batch(29, agency=AgencyFactory())
    with CaptureQueriesContext(connection) as thirty:
        staff_client.get(CHANGELIST)

    assert len(thirty) == len(one)
    # No DISTINCT over the table for a filter's choices, and a capped count.
    assert not [q for q in thirty if "DISTINCT" in q["sql"] and "emails_email" in q["sql"]]
    assert any("LIMIT 10001" in q["sql"] for q in thirty)


def test_a_big_result_says_more_than_the_cap(staff_client, agency, monkeypatch):
    from accounts.admin_support import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    EmailFactory.create_batch(5, agency=agency)

    response = staff_client.get(CHANGELIST)

    assert "more than 3 emails" in response.text


def test_the_email_page_shows_recipients_events_and_why_it_bounced(staff_client, agency):
    email = EmailFactory(
        agency=agency,
        recipient="gone@example.com",
        cc=["cc@example.com"],
        status="BOUNCED",
        error_code="Hard bounce",
        params={"subject": "Your OTP", "body": "<p>secret body 918273</p>"},
    )
    to = email.recipients.get(kind="to")
    EmailEvent.objects.create(
        email=email,
        recipient=to,
        type="bounced",
        occurred_at=timezone.now(),
        detail="550 5.1.1 <gone@example.com>: user unknown",
    )

    page = staff_client.get(f"/admin/emails/email/{email.pk}/change/").text

    assert "cc@example.com" in page
    assert "550 5.1.1 &lt;gone@example.com&gt;: user unknown" in page
    assert "Hard bounce" in page
    assert "secret body 918273" not in page  # metadata only, never the body


def test_emails_cannot_be_changed_or_deleted(staff_client, agency):
    email = EmailFactory(agency=agency)

    change = staff_client.post(f"/admin/emails/email/{email.pk}/change/", {"recipient": "x@y.z"})
    delete = staff_client.post(f"/admin/emails/email/{email.pk}/delete/", {"post": "yes"})

    assert change.status_code == HTTPStatus.FORBIDDEN
    assert delete.status_code == HTTPStatus.FORBIDDEN
    assert Email.objects.get(pk=email.pk).recipient == email.recipient


def test_an_absurd_id_is_not_an_error(staff_client, emails):
    assert ids_on(staff_client, q="9" * 30) == set()


def test_the_email_page_says_when_the_agency_suppressed_the_recipient(staff_client, agency):
    from emails.models import Suppression

    email = EmailFactory(agency=agency, recipient="spam-reporter@example.com")
    entry = Suppression.objects.create(
        agency=agency, address="spam-reporter@example.com", source="complaint"
    )

    page = staff_client.get(f"/admin/emails/email/{email.pk}/change/").text

    assert "Suppressed by the agency (Complaint" in page
    assert f"/admin/emails/suppression/{entry.pk}/change/" in page
