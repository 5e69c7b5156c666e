"""Less for PostgreSQL to write on every send.

- Two indexes go: the email's own index on ``agency_id`` (every other index of the table starts
  with the agency) and the recipient's on ``email_id`` (the unique (email, address) index serves
  every lookup by email). Only the indexes are dropped: the foreign keys stay as they are, where
  ``AlterField`` would drop and re-validate them over the whole table.
- The HTML and the raw request (``params``), some 5 KB each, are compressed with lz4 instead of
  pglz when PostgreSQL stores them out of line: 0.2 ms less database CPU per send here
  (docs/performance.md). Only new rows are affected. A server built without lz4 keeps pglz.
"""

import django.db.models.deletion
from django.db import DatabaseError, migrations, models, transaction

DROPPED_INDEXES = {
    "emails_email_agency_id_c1c22a2f": 'ON "emails_email" ("agency_id")',
    "emails_emailrecipient_email_id_0c18e363": 'ON "emails_emailrecipient" ("email_id")',
}
COMPRESSED = ("html", "params")


def compression(method):
    def apply(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        columns = ", ".join(
            f'ALTER COLUMN "{column}" SET COMPRESSION {method}' for column in COMPRESSED
        )
        try:
            with transaction.atomic(using=connection.alias):
                schema_editor.execute(f'ALTER TABLE "emails_email" {columns}')
        except DatabaseError:
            if method != "default":
                return  # this server has no lz4: the columns keep pglz
            raise

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_logincode"),
        ("emails", "0006_idempotentrequest"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="email",
                    name="agency",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="emails",
                        to="accounts.agency",
                    ),
                ),
                migrations.AlterField(
                    model_name="emailrecipient",
                    name="email",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="recipients",
                        to="emails.email",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"', f'CREATE INDEX "{name}" {target}'
                )
                for name, target in DROPPED_INDEXES.items()
            ],
        ),
        migrations.RunPython(compression("lz4"), compression("default")),
    ]
