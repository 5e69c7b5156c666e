"""Does Django admin stay fast over a million emails? ``python bench/admin_changelist.py``.

Creates a scratch PostgreSQL database next to ``DATABASE_URL``'s (default
``postgres://postgres@127.0.0.1:5432/postman_email``), migrates it, seeds ``--rows`` emails (and
their recipient rows) server-side with ``INSERT ... SELECT generate_series``, then times staff's
pages through Django's test client as a logged-in superuser: the email changelist, its searches
and filters, and one email's page. Prints a Markdown table and drops the database.

    python bench/admin_changelist.py [--rows 1000000] [--agencies 50] [--repeat 5] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postman_email"

# Status mix of a year of transactional email; COMPLAINT is the rare value an index must find.
STATUS_CASE = """CASE
    WHEN r < 0.70 THEN 'DELIVERED' WHEN r < 0.85 THEN 'OPENED' WHEN r < 0.90 THEN 'SENT'
    WHEN r < 0.94 THEN 'BOUNCED' WHEN r < 0.97 THEN 'UNSENT' WHEN r < 0.999 THEN 'ACCEPTED'
    ELSE 'COMPLAINT' END"""

SEED_EMAILS = f"""
INSERT INTO emails_email (
    agency_id, mode, sender, recipient, reply_to, cc, bcc, params, subject, html,
    classification, tag, disable_tracking, status, error_code, error_sub_type,
    created_at, updated_at, message_id, attempts, last_smtp_response)
SELECT
    %(first_agency)s + (i %% %(agencies)s),
    'live', 'Postman <info@mail.postman.gov.sg>',
    'citizen' || (i::bigint * 7919 %% 400000) || '@example' || (i %% 20) || '.com',
    'officer@agency.gov.sg', '[]', '[]',
    jsonb_build_object('subject', 'Your one-time password', 'body', body),
    'Your one-time password', body, NULL,
    CASE WHEN i %% 5 = 0 THEN NULL WHEN i %% 5 < 3 THEN 'otp' ELSE 'reminder-' || (i %% 97) END,
    false, status,
    CASE status WHEN 'BOUNCED' THEN 'Hard bounce' WHEN 'COMPLAINT' THEN 'abuse' END,
    CASE status WHEN 'BOUNCED' THEN 'General' END,
    created_at, created_at, '<' || i || '@mail.postman.gov.sg>', 1, ''
FROM (
    SELECT i, {STATUS_CASE} AS status,
        now() - interval '365 days' * (1 - i::float / %(rows)s) AS created_at,
        '<p>Your one-time password is <b>' || lpad((i %% 1000000)::text, 6, '0')
            || '</b>. It expires in 5 minutes.</p>' || repeat('<p>Lorem ipsum dolor sit.</p>', 12)
            AS body
    FROM (SELECT i, random() AS r FROM generate_series(1, %(rows)s) AS i) AS numbers
) AS seeded
"""

SEED_RECIPIENTS = """
INSERT INTO emails_emailrecipient (email_id, kind, address, status, error_code, updated_at)
SELECT id, 'to', recipient, status, error_code, updated_at FROM emails_email
"""


def scratch_urls(url: str) -> tuple[str, str, str]:
    """(maintenance URL, scratch URL, scratch database name)."""
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_bench_admin_{os.getpid()}"
    return (
        urlunsplit(parts._replace(path="/postgres")),
        urlunsplit(parts._replace(path=f"/{name}")),
        name,
    )


def seed(*, rows: int, agencies: int) -> dict[str, object]:
    from django.db import connection

    from accounts.models import Agency, AgencyDomain, User
    from emails.models import EmailEvent, EmailRecipient

    created = Agency.objects.bulk_create(Agency(name=f"Agency {n}") for n in range(agencies))
    AgencyDomain.objects.bulk_create(
        AgencyDomain(agency=agency, domain=f"agency{agency.pk}.gov.sg") for agency in created
    )
    User.objects.create_superuser("staff@postman.gov.sg", "bench-password")
    with connection.cursor() as cursor:
        params = {"first_agency": created[0].pk, "agencies": agencies, "rows": rows}
        cursor.execute(SEED_EMAILS, params)
        cursor.execute(SEED_RECIPIENTS)
        cursor.execute("ANALYZE")
        cursor.execute("SELECT id, recipient FROM emails_email WHERE status = 'BOUNCED' LIMIT 1")
        email_id, recipient = cursor.fetchone()
    to = EmailRecipient.objects.get(email_id=email_id)
    EmailEvent.objects.create(
        email_id=email_id,
        recipient=to,
        type="bounced",
        occurred_at=to.updated_at,
        detail="550 5.1.1 user unknown",
    )
    return {"email_id": email_id, "recipient": recipient, "agency_id": created[1].pk}


def time_pages(
    *, targets: dict[str, object], repeat: int
) -> list[tuple[str, float, float, float, int]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User

    client = Client(HTTP_HOST="localhost")
    client.force_login(User.objects.get(email="staff@postman.gov.sg"))
    changelist = "/admin/emails/email/"
    since = urlencode({"created_at__gte": f"{date.today() - timedelta(days=7)} 00:00:00+00:00"})
    pages = [
        ("email changelist", changelist),
        ("search by recipient (exact)", f"{changelist}?q={targets['recipient']}"),
        ("search by recipient (prefix)", f"{changelist}?q={str(targets['recipient'])[:10]}"),
        ("search by id", f"{changelist}?q={targets['email_id']}"),
        ("search by tag", f"{changelist}?q=reminder-42"),
        ("filter status=BOUNCED", f"{changelist}?status__exact=BOUNCED"),
        ("filter status=COMPLAINT (rare)", f"{changelist}?status__exact=COMPLAINT"),
        ("filter agency", f"{changelist}?agency__id__exact={targets['agency_id']}"),
        ("filter past 7 days", f"{changelist}?{since}"),
        ("one email (recipients, events)", f"{changelist}{targets['email_id']}/change/"),
        ("blacklist changelist", "/admin/emails/blacklistentry/"),
        ("audit log changelist", "/admin/accounts/auditevent/"),
    ]
    results = []
    for name, url in pages:
        response = client.get(url)  # warm-up: plans and caches, as on a live server
        assert response.status_code == 200, (url, response.status_code)
        timings, sql = [], []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            sql.append(sum(float(query["time"]) for query in queries.captured_queries) * 1000)
        results.append(
            (
                name,
                statistics.median(timings),
                max(timings),
                statistics.median(sql),
                len(queries),
            )
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--agencies", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    maintenance, scratch, name = scratch_urls(os.environ.get("DATABASE_URL", DEFAULT_URL))
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        os.environ.update(DATABASE_URL=scratch, DEBUG="true", CONN_MAX_AGE="0")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postman_email.settings")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        targets = seed(rows=args.rows, agencies=args.agencies)
        seeded = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('emails_email'))")
            size = cursor.fetchone()[0]
        results = time_pages(targets=targets, repeat=args.repeat)
        connection.close()
    finally:
        if not args.keep:
            with psycopg.connect(maintenance, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(
        f"\n{args.rows:,} emails in {args.agencies} agencies (emails_email: {size}), "
        f"seeded in {seeded:.0f} s; median and worst of {args.repeat} requests.\n"
    )
    print("| page | median ms | worst ms | of which SQL (median ms) | queries |")
    print("|---|---:|---:|---:|---:|")
    for page, median, worst, sql, queries in results:
        print(f"| {page} | {median:.0f} | {worst:.0f} | {sql:.1f} | {queries} |")
    if args.keep:
        print(f"\nkept: {scratch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
