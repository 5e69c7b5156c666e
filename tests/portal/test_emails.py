from __future__ import annotations

from datetime import datetime, timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apikeys.services import apikey_create
from emails.models import EmailEvent
from tests.factories import EmailAttachmentFactory, EmailFactory

pytestmark = pytest.mark.django_db


def shown(response) -> list[int]:
    return [email.pk for email in response.context["page"].rows]


@pytest.fixture
def start():
    return timezone.make_aware(datetime(2026, 3, 2, 9, 0))


# --- list ------------------------------------------------------------------------------------


def test_the_list_shows_the_agencys_emails_newest_first(owner_client, owner, outsider, start):
    older = EmailFactory(agency=owner.agency, created_at=start)
    newer = EmailFactory(agency=owner.agency, created_at=start + timedelta(minutes=1))
    theirs = EmailFactory(agency=outsider.agency, recipient="secret@mom.gov.sg")

    response = owner_client.get("/emails/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "emails"
    assert shown(response) == [newer.pk, older.pk]
    assert theirs.recipient not in response.content.decode()


def test_a_teammate_sees_the_agencys_emails_too(teammate_client, owner):
    email = EmailFactory(agency=owner.agency)

    assert shown(teammate_client.get("/emails/")) == [email.pk]


def test_an_outsider_sees_none_of_them(outsider_client, owner):
    EmailFactory(agency=owner.agency)

    assert shown(outsider_client.get("/emails/")) == []


def test_it_filters_by_status_tag_and_created_dates(owner_client, owner, start):
    a = EmailFactory(agency=owner.agency, status="BOUNCED", tag="otp", created_at=start)
    b = EmailFactory(
        agency=owner.agency, status="DELIVERED", tag="otp", created_at=start + timedelta(days=1)
    )
    c = EmailFactory(
        agency=owner.agency, status="BOUNCED", tag="news", created_at=start + timedelta(days=2)
    )

    assert shown(owner_client.get("/emails/", {"status": "bounced"})) == [c.pk, a.pk]
    assert shown(owner_client.get("/emails/", {"tag": "otp"})) == [b.pk, a.pk]
    assert shown(
        owner_client.get("/emails/", {"created_from": "2026-03-03", "created_to": "2026-03-03"})
    ) == [b.pk]
    assert shown(owner_client.get("/emails/", {"status": "BOUNCED", "tag": "otp"})) == [a.pk]


def test_created_dates_are_days_in_the_portals_time_zone(owner_client, owner):
    # 23:30 in Singapore on 2 March is 15:30 UTC the same day; 00:30 on 3 March is still
    # 2 March in UTC.
    late = EmailFactory(
        agency=owner.agency, created_at=timezone.make_aware(datetime(2026, 3, 2, 23, 30))
    )
    EmailFactory(agency=owner.agency, created_at=timezone.make_aware(datetime(2026, 3, 3, 0, 30)))

    response = owner_client.get("/emails/", {"created_to": "2026-03-02"})

    assert shown(response) == [late.pk]


def test_it_sorts_like_the_api(owner_client, owner, start):
    a = EmailFactory(agency=owner.agency, created_at=start, updated_at=start + timedelta(hours=5))
    b = EmailFactory(
        agency=owner.agency,
        created_at=start + timedelta(hours=1),
        updated_at=start + timedelta(hours=2),
    )

    assert shown(owner_client.get("/emails/", {"sort": "created_at"})) == [a.pk, b.pk]
    assert shown(owner_client.get("/emails/", {"sort": "-updated_at"})) == [a.pk, b.pk]
    assert shown(owner_client.get("/emails/", {"sort": "updated_at"})) == [b.pk, a.pk]


def test_it_searches_by_whole_recipient_or_its_beginning(owner_client, owner):
    alice = EmailFactory(agency=owner.agency, recipient="alice@example.com")
    alice_sg = EmailFactory(agency=owner.agency, recipient="alice@example.com.sg")
    EmailFactory(agency=owner.agency, recipient="bob@example.com")

    exact = owner_client.get("/emails/", {"recipient": "Alice@Example.com"})
    prefix = owner_client.get("/emails/", {"recipient": "ali"})
    wildcard = owner_client.get("/emails/", {"recipient": "%"})

    assert shown(exact) == [alice.pk]
    assert sorted(shown(prefix)) == sorted([alice.pk, alice_sg.pk])
    assert shown(wildcard) == []


def test_bad_filters_show_an_error_instead_of_failing(owner_client, owner):
    EmailFactory(agency=owner.agency)

    response = owner_client.get(
        "/emails/", {"created_from": "31/31/2026", "status": "LOST", "sort": "drop table"}
    )

    assert response.status_code == HTTPStatus.OK
    assert set(response.context["form"].errors) == {"created_from", "status", "sort"}
    assert len(shown(response)) == 1


def test_it_pages_with_cursors_through_ties(owner_client, owner, start):
    # Many emails share a timestamp: the id breaks the tie, so no page repeats or skips one.
    emails = [
        EmailFactory(agency=owner.agency, created_at=start + timedelta(seconds=i // 7))
        for i in range(120)
    ]
    expected = [e.pk for e in sorted(emails, key=lambda e: (e.created_at, e.pk), reverse=True)]

    pages, after = [], None
    while True:
        response = owner_client.get("/emails/", {"after": after} if after else {})
        pages.append(shown(response))
        after = response.context["page"].next_cursor
        if after is None:
            break
    back = owner_client.get("/emails/", {"before": response.context["page"].previous_cursor})

    assert [len(page) for page in pages] == [50, 50, 20]
    assert [pk for page in pages for pk in page] == expected
    assert shown(back) == pages[1]


def test_paging_keeps_the_filters(owner_client, owner, start):
    for i in range(60):
        EmailFactory(agency=owner.agency, tag="otp", created_at=start + timedelta(minutes=i))

    html = owner_client.get("/emails/", {"tag": "otp", "sort": "created_at"}).content.decode()

    assert "?tag=otp&amp;sort=created_at&amp;after=" in html
    assert "Next →" in html


def test_a_page_costs_the_same_queries_and_never_counts(owner_client, owner, start):
    for i in range(120):
        EmailFactory(agency=owner.agency, created_at=start + timedelta(minutes=i))
    first = owner_client.get("/emails/")
    after = owner_client.get("/emails/", {"after": first.context["page"].next_cursor})

    with CaptureQueriesContext(connection) as queries:
        owner_client.get("/emails/", {"after": after.context["page"].next_cursor})

    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not any("COUNT(" in statement for statement in sql)
    assert not any("OFFSET" in statement for statement in sql)
    assert len(sql) <= 4  # session, user, the page (+ nothing per row)


def test_the_first_email_help_shows_only_when_there_is_no_email(owner_client, owner):
    empty = owner_client.get("/emails/").content.decode()
    EmailFactory(agency=owner.agency, tag="otp")
    filtered = owner_client.get("/emails/", {"tag": "news"}).content.decode()

    assert "Send your first email" in empty
    assert "Send your first email" not in filtered
    assert "No emails match these filters" in filtered


# --- detail ----------------------------------------------------------------------------------


@pytest.fixture
def email(owner):
    key = apikey_create(owner=owner, label="Appointments").key
    email = EmailFactory(
        agency=owner.agency,
        api_key=key,
        recipient="citizen@example.com",
        cc=["copy@example.com"],
        tag="appointment",
        status="BOUNCED",
        error_code="Hard bounce",
        error_sub_type="General",
        html="<p>Your appointment</p><img src='https://tracker.example.com/x.png'>",
    )
    to, cc = email.recipients.order_by("pk")
    now = timezone.now()
    EmailEvent.objects.create(email=email, recipient=to, type="accepted", occurred_at=now)
    EmailEvent.objects.create(
        email=email,
        recipient=to,
        type="bounced",
        occurred_at=now + timedelta(seconds=5),
        detail="550 5.1.1 user unknown",
    )
    EmailEvent.objects.create(email=email, recipient=cc, type="delivered", occurred_at=now)
    EmailAttachmentFactory(email=email, filename="letter.pdf", content=b"%PDF-1.4 x")
    return email


def test_the_detail_page_shows_metadata_recipients_timeline_and_attachments(owner_client, email):
    response = owner_client.get(f"/emails/{email.pk}/")
    html = response.content.decode()

    assert response.status_code == HTTPStatus.OK
    assert response.context["nav"] == "emails"
    assert [r.address for r in response.context["recipients"]] == [
        "citizen@example.com",
        "copy@example.com",
    ]
    assert [e.type for e in response.context["events"]] == ["accepted", "delivered", "bounced"]
    assert "550 5.1.1 user unknown" in html
    assert "Hard bounce" in html
    assert "letter.pdf" in html
    assert "Appointments" in html
    assert f'src="/emails/{email.pk}/preview"' in html
    assert 'sandbox=""' in html


def test_a_teammate_opens_it_too(teammate_client, email):
    assert teammate_client.get(f"/emails/{email.pk}/").status_code == HTTPStatus.OK
    assert teammate_client.get(f"/emails/{email.pk}/preview").status_code == HTTPStatus.OK


@pytest.mark.parametrize("suffix", ["", "preview"])
def test_another_agencys_email_is_not_found(outsider_client, email, suffix):
    response = outsider_client.get(f"/emails/{email.pk}/{suffix}")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert b"Your appointment" not in response.content


@pytest.mark.parametrize("path", ["/emails/", "/emails/1/", "/emails/1/preview"])
def test_anonymous_visitors_are_sent_to_log_in(client, path):
    response = client.get(path)

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/login?next=")


def test_an_email_id_beyond_bigint_is_not_found(owner_client):
    assert owner_client.get(f"/emails/{2**70}/").status_code == HTTPStatus.NOT_FOUND


def test_an_unsent_email_explains_itself(owner_client, owner):
    email = EmailFactory(
        agency=owner.agency, status="UNSENT", error_code="Error 400: Blacklisted recipient"
    )

    html = owner_client.get(f"/emails/{email.pk}/").content.decode()

    assert "Not sent" in html
    assert "Blacklisted recipient" in html


def test_the_preview_is_sandboxed_with_its_own_policy(owner_client, email):
    response = owner_client.get(f"/emails/{email.pk}/preview")
    policy = response["Content-Security-Policy"]

    assert response.status_code == HTTPStatus.OK
    assert b"<p>Your appointment</p>" in response.content
    assert "default-src 'none'" in policy
    assert "img-src cid: data:;" in policy
    assert "script-src" not in policy  # falls back to default-src 'none'
    assert "sandbox" in policy
    assert "frame-ancestors 'self'" in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert "no-store" in response["Cache-Control"]


def test_remote_images_load_only_when_asked(owner_client, email):
    detail = owner_client.get(f"/emails/{email.pk}/?remote=1").content.decode()
    preview = owner_client.get(f"/emails/{email.pk}/preview?remote=1")

    assert f'src="/emails/{email.pk}/preview?remote=1"' in detail
    assert "img-src cid: data: https:;" in preview["Content-Security-Policy"]


def test_every_other_portal_page_may_not_be_framed(owner_client, email):
    response = owner_client.get(f"/emails/{email.pk}/")

    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
