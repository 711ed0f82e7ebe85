# A delivery's claim names its holder and keeps its expiry on the row (shared.claims), instead
# of "claimed_at plus a constant" known only to the code.
from datetime import timedelta

from django.db import migrations, models
from django.db.models import F

# What the constant was (ReportDelivery.SENDING_STALE_AFTER) when the rows below were claimed.
SENDING_STALE_AFTER = timedelta(minutes=10)


def claims_expire(apps, schema_editor):
    ReportDelivery = apps.get_model("reports", "ReportDelivery")
    ReportDelivery.objects.filter(status="sending", claimed_at__isnull=False).update(
        claimed_until=F("claimed_at") + SENDING_STALE_AFTER
    )


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0002_cascade_in_database"),
    ]

    operations = [
        migrations.AddField(
            model_name="reportdelivery",
            name="claimed_by",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name="reportdelivery",
            name="claimed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(claims_expire, migrations.RunPython.noop),
    ]
