"""Register the delivery sweeper (emails.tasks.requeue_stale) as a django-q2 schedule.

A migration rather than code at start-up: every deployment runs ``migrate`` once, the row is
created exactly once however many workers start, and an operator can still see or pause it in
Django admin (Django Q → Scheduled tasks).
"""

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "emails.requeue_stale"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "emails.tasks.requeue_stale",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 1,
            "repeats": -1,
            "next_run": timezone.now(),
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("emails", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
