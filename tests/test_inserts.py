"""``insert_with_children``: an email and its recipients in one statement, or not at all."""

from __future__ import annotations

import pytest
from django.db import DataError, IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from emails.models import Email, EmailRecipient
from emails.services.suppressions import blocked_addresses_query
from postman_email.inserts import insert_with_children
from tests.factories import BlacklistEntryFactory

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement insert is PostgreSQL's"
)


@pytest.fixture
def email(api):
    key = api.key
    return Email(
        agency_id=key.agency_id,
        api_key=key,
        sender="Postman <donotreply@mail.postman.gov.sg>",
        recipient="first@example.com",
        cc=["second@example.com"],
        params={"subject": "Hello", "body": "<p>Hi</p>"},
        subject="Hello",
        html="<p>Hi</p>",
        tag="otp",
    )


def recipients(*addresses: str, error_code: str | None = None) -> list[EmailRecipient]:
    return [
        EmailRecipient(kind="to" if n == 0 else "cc", address=address, error_code=error_code)
        for n, address in enumerate(addresses)
    ]


def stored(email: Email) -> list[tuple]:
    return list(
        EmailRecipient.objects.filter(email=email)
        .order_by("id")
        .values_list("kind", "address", "status", "error_code")
    )


@on_postgresql
def test_the_email_and_its_recipients_are_one_statement(email):
    children = recipients("first@example.com", "second@example.com", error_code="Error 400: x")

    with CaptureQueriesContext(connection) as queries:
        insert_with_children(email, children, fk_name="email")

    assert len(queries) == 1
    assert email.pk is not None and not email._state.adding
    assert all(child.email is email for child in children)
    row = Email.objects.get(pk=email.pk)
    assert (row.recipient, row.cc, row.params, row.tag, row.status, row.mode) == (
        "first@example.com",
        ["second@example.com"],
        {"subject": "Hello", "body": "<p>Hi</p>"},
        "otp",
        "UNSENT",
        "live",
    )
    assert row.created_at == email.created_at
    assert stored(email) == [
        ("to", "first@example.com", "UNSENT", "Error 400: x"),
        ("cc", "second@example.com", "UNSENT", "Error 400: x"),
    ]


def test_the_orm_path_of_other_databases_writes_the_same_rows(email, monkeypatch):
    monkeypatch.setattr(connection, "vendor", "other")

    insert_with_children(email, recipients("first@example.com", "b@example.com"), fk_name="email")

    assert Email.objects.filter(pk=email.pk, recipient="first@example.com").exists()
    assert stored(email) == [
        ("to", "first@example.com", "UNSENT", None),
        ("cc", "b@example.com", "UNSENT", None),
    ]


# Autocommit, as in a request: nothing but the helper itself may undo the email's row.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("vendor", [connection.vendor, "other"])
def test_a_refused_recipient_row_leaves_no_email_behind(email, monkeypatch, vendor):
    monkeypatch.setattr(connection, "vendor", vendor)

    with pytest.raises(IntegrityError):
        # The same address twice breaks the (email, address) unique constraint.
        insert_with_children(
            email, recipients("first@example.com", "first@example.com"), fk_name="email"
        )

    assert not Email.objects.exists()
    assert not EmailRecipient.objects.filter(address="first@example.com").exists()


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_over_long_child_value_is_refused_not_truncated(email):
    child = EmailRecipient(kind="toolong", address="first@example.com")

    with pytest.raises(DataError):
        insert_with_children(email, [child], fk_name="email")

    assert not Email.objects.exists()
    assert not EmailRecipient.objects.exists()


def guard(email: Email, *addresses: str) -> tuple[str, list]:
    return blocked_addresses_query(agency_id=email.agency_id, addresses=list(addresses))


@pytest.mark.parametrize("vendor", [connection.vendor, "other"])
def test_a_guard_that_finds_rows_writes_nothing_and_returns_them(email, monkeypatch, vendor):
    monkeypatch.setattr(connection, "vendor", vendor)
    BlacklistEntryFactory(address="second@example.com")

    found = insert_with_children(
        email,
        recipients("first@example.com", "second@example.com"),
        fk_name="email",
        unless=guard(email, "first@example.com", "second@example.com"),
    )

    assert found == ["second@example.com"]
    assert email.pk is None
    assert not Email.objects.exists() and not EmailRecipient.objects.exists()


@pytest.mark.parametrize("vendor", [connection.vendor, "other"])
def test_a_guard_that_finds_nothing_lets_the_rows_in(email, monkeypatch, vendor):
    monkeypatch.setattr(connection, "vendor", vendor)
    BlacklistEntryFactory(address="someone-else@example.com")

    with CaptureQueriesContext(connection) as queries:
        found = insert_with_children(
            email,
            recipients("first@example.com", "second@example.com"),
            fk_name="email",
            unless=guard(email, "first@example.com", "second@example.com"),
        )

    assert found == []
    assert Email.objects.filter(pk=email.pk).exists()
    assert len(stored(email)) == 2
    if vendor == "postgresql":
        # The guard rides in the insert's statement.
        assert len(queries) == 1


def _row(pk: int) -> dict:
    """Every column but the id, each as (is it SQL NULL, its text): a JSON null and an SQL NULL
    in a JSON column differ."""
    columns = [f.column for f in Email._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    selected = ", ".join(f"{quote(c)} IS NULL, {quote(c)}::text" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {selected} FROM emails_email WHERE id = %s", [pk])  # noqa: S608
        values = cursor.fetchone()
    return {column: (values[2 * n], values[2 * n + 1]) for n, column in enumerate(columns)}


@on_postgresql
def test_empty_columns_are_stored_as_the_orms_save_stores_them(email):
    saved = Email(**{f.attname: getattr(email, f.attname) for f in Email._meta.concrete_fields})
    saved.save(force_insert=True)

    insert_with_children(email, recipients("first@example.com"), fk_name="email")

    # Column for column: SQL NULL (not JSON null) in the JSON columns, NULL in the other empty
    # ones, the model's default where it has one.
    row = _row(email.pk)
    assert row == _row(saved.pk)
    assert row["attachments_metadata"] == (True, None)
    assert row["accepted_at"] == (True, None)
    assert row["attempts"] == (False, "0")
