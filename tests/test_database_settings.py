"""PostgreSQL connections bind parameters server-side and prepare what they repeat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
SEND = "/v1/transactional/email/send"
PRINT_OPTIONS = (
    "import json; from django.conf import settings; "
    "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))"
)


def database_options(tmp_path, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "shell", "-c", PRINT_OPTIONS],
        cwd=BASE_DIR,
        env={
            "PATH": "/usr/bin:/bin",
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_prepared_statements_are_on_by_default_and_can_be_switched_off(tmp_path):
    assert database_options(tmp_path) == {"server_side_binding": True, "prepare_threshold": 5}
    assert database_options(tmp_path, DATABASE_PREPARED_STATEMENTS="false") == {}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared statements")
def test_repeated_sends_reuse_the_prepared_insert(api):
    for n in range(6):
        response = api.client.post(
            SEND,
            {"recipient": f"r{n}@example.com", "subject": "Hi", "body": "<p>Hi</p>"},
            format="json",
        )
        assert response.status_code == 201

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [statement for (statement,) in cursor.fetchall()]
    assert any('INSERT INTO "emails_email"' in statement for statement in statements)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's storage")
def test_the_large_email_columns_are_compressed_with_lz4_and_redundant_indexes_are_gone(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, attcompression FROM pg_attribute"
            " WHERE attrelid = 'emails_email'::regclass AND attname IN ('html', 'params')"
        )
        assert dict(cursor.fetchall()) == {"html": "l", "params": "l"}
        cursor.execute(
            "SELECT indexdef FROM pg_indexes"
            " WHERE tablename IN ('emails_email', 'emails_emailrecipient')"
        )
        definitions = [definition for (definition,) in cursor.fetchall()]
    assert not [d for d in definitions if d.endswith("(agency_id)") or d.endswith("(email_id)")]
