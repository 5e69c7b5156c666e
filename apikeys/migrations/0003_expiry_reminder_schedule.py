"""Register the daily API key expiry reminders as a django-q2 schedule (09:00 Singapore time).

A migration, like the delivery sweeper: created once per deployment, visible and pausable in
Django admin (Django Q → Scheduled tasks)."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "apikeys.expiry_reminders"


def _next_nine_am():
    singapore = ZoneInfo("Asia/Singapore")
    now = timezone.now().astimezone(singapore)
    run = datetime.combine(now.date(), time(9), tzinfo=singapore)
    return run if run > now else run + timedelta(days=1)


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "apikeys.tasks.send_expiry_reminders",
            "schedule_type": "D",  # Schedule.DAILY
            "repeats": -1,
            "next_run": _next_nine_am(),
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("apikeys", "0002_apikey_predecessor_apikeyreminder"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
