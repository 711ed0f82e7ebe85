# A report chooses the period it covers (Report.covered_period); a run records the period it
# covered (period_start, period_end).
#
# Existing reports keep what they did: a run covered the calendar day of its slot, of which only
# the part before the slot had happened, which is "the day so far". The column is added with that
# as its default, so every existing row gets it, and then altered to the model's default for new
# reports, the previous day. Existing runs get the period their summary was read over: the whole
# calendar day of covered_day in the report's timezone.
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import reports.models
from django.db import migrations, models

PERIODS = [
    ("previous_day", "The previous day"),
    ("day_so_far", "The day so far"),
    ("last_24_hours", "The 24 hours before the due time"),
    ("previous_week", "The previous week (Monday to Sunday)"),
]
COVERED_PERIOD_HELP = (
    "What each run reports on, counted back from the time it is due, in the report's timezone: the previous "
    "day (midnight to midnight), the day so far (midnight to the due time), the 24 hours before the due time, "
    "or the previous week (Monday 00:00 to Monday 00:00). A day across a DST change is 23 or 25 hours long."
)
BATCH = 500


def periods_of_archived_runs(apps, schema_editor) -> None:
    ReportRun = apps.get_model("reports", "ReportRun")
    runs = ReportRun.objects.filter(period_start__isnull=True).select_related("report")
    batch = []
    for run in runs.iterator(chunk_size=BATCH):
        zone = ZoneInfo(run.report.timezone)
        run.period_start = datetime.combine(run.covered_day, time(0), tzinfo=zone).astimezone(UTC)
        run.period_end = datetime.combine(run.covered_day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        batch.append(run)
        if len(batch) == BATCH:
            ReportRun.objects.bulk_update(batch, ["period_start", "period_end"])
            batch = []
    ReportRun.objects.bulk_update(batch, ["period_start", "period_end"])


class Migration(migrations.Migration):

    dependencies = [
        ('reports', '0003_delivery_claim'),
    ]

    operations = [
        migrations.AddField(
            model_name='report',
            name='covered_period',
            field=models.CharField(choices=PERIODS, default='day_so_far', help_text=COVERED_PERIOD_HELP,
                                   max_length=16),
        ),
        migrations.AlterField(
            model_name='report',
            name='covered_period',
            field=models.CharField(choices=PERIODS, default='previous_day', help_text=COVERED_PERIOD_HELP,
                                   max_length=16),
        ),
        migrations.AddField(
            model_name='reportrun',
            name='period_end',
            field=models.DateTimeField(blank=True, help_text='The end of the period it covers, excluded.', null=True),
        ),
        migrations.AddField(
            model_name='reportrun',
            name='period_start',
            field=models.DateTimeField(blank=True, help_text='The start of the period the run covers.', null=True),
        ),
        migrations.AlterField(
            model_name='report',
            name='timezone',
            field=models.CharField(default=reports.models.site_timezone, help_text='The report is due at its time in this timezone; the days and weeks it covers are days here.', max_length=64, validators=[reports.models.validate_timezone]),
        ),
        migrations.AlterField(
            model_name='reportrun',
            name='covered_day',
            field=models.DateField(help_text="The day the run was due, in the report's timezone.", verbose_name='day due'),
        ),
        migrations.RunPython(periods_of_archived_runs, migrations.RunPython.noop),
    ]
