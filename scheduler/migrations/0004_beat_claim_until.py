# Beat's claim on an unsent run keeps its expiry on the row (shared.claims), instead of
# "claimed_at plus a constant" known only to the code.
from datetime import timedelta

from django.db import migrations, models
from django.db.models import F

# What the constant was (scheduler.dispatch.RECLAIM_AFTER) when the rows below were claimed.
RECLAIM_AFTER = timedelta(seconds=20)


def claims_expire(apps, schema_editor):
    ScheduleRun = apps.get_model("scheduler", "ScheduleRun")
    ScheduleRun.objects.filter(status="claimed").update(claimed_until=F("claimed_at") + RECLAIM_AFTER)


class Migration(migrations.Migration):

    dependencies = [
        ("scheduler", "0003_schedule_change_triggers"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedulerun",
            name="claimed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(claims_expire, migrations.RunPython.noop),
    ]
