"""Indexes for staff's email changelist across agencies (docs/staff-and-suppressions.md): the
status filter and the search by tag in id order, the search by recipient (exact or prefix), and
the date filter's range. Built concurrently on PostgreSQL so that an existing installation keeps
sending meanwhile."""

from django.db import migrations, models

from emails.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("emails", "0004_sender_domain_check_schedule"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="email",
            index=models.Index(fields=["status", "-id"], name="email_status_id"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="email",
            index=models.Index(
                condition=models.Q(("tag__isnull", False)),
                fields=["tag", "-id"],
                name="email_tag_id",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="email",
            index=models.Index(
                fields=["recipient"], name="email_recipient", opclasses=["varchar_pattern_ops"]
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="email",
            index=models.Index(fields=["created_at"], name="email_created_at"),
        ),
    ]
