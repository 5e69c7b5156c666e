"""Register the daily sender domain check (emails.sender_tasks.check_all_sender_domains) as a
django-q2 schedule, like the delivery sweeper (0002): created once by ``migrate``, visible and
pausable in Django admin. It runs at 03:00 Singapore time, away from office-hours sending."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "emails.sender_domain_checks"


def _next_three_am():
    singapore = ZoneInfo("Asia/Singapore")
    now = timezone.now().astimezone(singapore)
    run = datetime.combine(now.date(), time(3), tzinfo=singapore)
    return run if run > now else run + timedelta(days=1)


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "emails.sender_tasks.check_all_sender_domains",
            "schedule_type": "D",  # Schedule.DAILY
            "repeats": -1,
            "next_run": _next_three_am(),
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("emails", "0003_verifiedsender_confirmation_sent_at_and_more"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
