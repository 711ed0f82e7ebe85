"""The period a report covers is counted back from its slot in the report's timezone, never from
the worker's clock; the email and the archive show it."""

from datetime import UTC, date, datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from reports.models import Report, ReportRun
from reports.sections import CoveredPeriod, operations_summary_tables
from reports.services import DAILY_OPERATIONS, report_deliver, report_save, reports_seed
from reports.tasks import report_send
from scheduler.messages import RUN_HEADER, SCHEDULED_FOR_HEADER
from scheduler.models import ScheduleRun
from scheduler.timing import first_slot_after
from tests.builders import ledger_run
from tests.reports.conftest import report_with

pytestmark = pytest.mark.django_db

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
PREVIOUS_DAY, DAY_SO_FAR = Report.Period.PREVIOUS_DAY, Report.Period.DAY_SO_FAR
LAST_24_HOURS, PREVIOUS_WEEK = Report.Period.LAST_24_HOURS, Report.Period.PREVIOUS_WEEK


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def deliver_from_beat(report: Report, slot: datetime) -> ScheduleRun:
    """What a worker does with beat's message for the report's slot: its own ledger run is
    running while the report is built."""
    run = ledger_run(report.schedule, slot, status=ScheduleRun.Status.SENT)
    report_send.apply(
        kwargs={"report_id": report.pk},
        task_id=run.task_id,
        headers={RUN_HEADER: run.id, SCHEDULED_FOR_HEADER: slot.isoformat()},
    )
    run.refresh_from_db()
    return run


def body(message, kind: str) -> str:
    return message.get_body(preferencelist=(kind,)).get_content()


def runs_counted(report: Report, slot: datetime) -> dict:
    (outcomes, *_) = operations_summary_tables(CoveredPeriod.of(report, slot))
    return {row[0]: row[1] for row in outcomes.rows}


# New York springs forward on Sunday 2026-03-08 (02:00 EST to 03:00 EDT) and falls back on Sunday
# 2026-11-01 (02:00 EDT to 01:00 EST). Auckland falls back on Sunday 2026-04-05 (03:00 NZDT to
# 02:00 NZST) and springs forward on Sunday 2026-09-27 (02:00 NZST to 03:00 NZDT); its 07:00 is the
# evening before in UTC. Santiago springs forward at midnight itself: 2026-09-06 has no 00:00.
@pytest.mark.parametrize(
    "zone, period, slot, start, end, hours",
    [
        ("America/New_York", PREVIOUS_DAY, utc(2026, 3, 9, 11), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23),
        ("America/New_York", PREVIOUS_DAY, utc(2026, 11, 2, 12), utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 25),
        ("America/New_York", DAY_SO_FAR, utc(2026, 3, 8, 11), utc(2026, 3, 8, 5), utc(2026, 3, 8, 11), 6),
        ("America/New_York", DAY_SO_FAR, utc(2026, 11, 1, 12), utc(2026, 11, 1, 4), utc(2026, 11, 1, 12), 8),
        ("America/New_York", LAST_24_HOURS, utc(2026, 3, 8, 11), utc(2026, 3, 7, 11), utc(2026, 3, 8, 11), 24),
        ("America/New_York", LAST_24_HOURS, utc(2026, 11, 1, 12), utc(2026, 10, 31, 12), utc(2026, 11, 1, 12), 24),
        ("America/New_York", PREVIOUS_WEEK, utc(2026, 3, 9, 11), utc(2026, 3, 2, 5), utc(2026, 3, 9, 4), 167),
        ("America/New_York", PREVIOUS_WEEK, utc(2026, 11, 4, 12), utc(2026, 10, 26, 4), utc(2026, 11, 2, 5), 169),
        ("Pacific/Auckland", PREVIOUS_DAY, utc(2026, 4, 5, 19), utc(2026, 4, 4, 11), utc(2026, 4, 5, 12), 25),
        ("Pacific/Auckland", PREVIOUS_DAY, utc(2026, 9, 27, 18), utc(2026, 9, 26, 12), utc(2026, 9, 27, 11), 23),
        ("Pacific/Auckland", DAY_SO_FAR, utc(2026, 4, 4, 19), utc(2026, 4, 4, 11), utc(2026, 4, 4, 19), 8),
        ("Pacific/Auckland", DAY_SO_FAR, utc(2026, 9, 26, 18), utc(2026, 9, 26, 12), utc(2026, 9, 26, 18), 6),
        ("Pacific/Auckland", LAST_24_HOURS, utc(2026, 4, 4, 19), utc(2026, 4, 3, 19), utc(2026, 4, 4, 19), 24),
        ("Pacific/Auckland", LAST_24_HOURS, utc(2026, 9, 26, 18), utc(2026, 9, 25, 18), utc(2026, 9, 26, 18), 24),
        ("Pacific/Auckland", PREVIOUS_WEEK, utc(2026, 4, 5, 19), utc(2026, 3, 29, 11), utc(2026, 4, 5, 12), 169),
        ("Pacific/Auckland", PREVIOUS_WEEK, utc(2026, 9, 27, 18), utc(2026, 9, 20, 12), utc(2026, 9, 27, 11), 167),
        ("America/Santiago", PREVIOUS_DAY, utc(2026, 9, 7, 3), utc(2026, 9, 6, 4), utc(2026, 9, 7, 3), 23),
    ],
)
def test_each_period_is_counted_back_from_the_slot_in_the_reports_timezone(zone, period, slot, start, end, hours):
    report = Report(name="Ops", timezone=zone, covered_period=period)
    assert report.period_for(slot) == (start, end)
    assert end - start == timedelta(hours=hours)
    # The same moment written in the report's own zone: "24 hours" stays absolute time.
    assert report.period_for(slot.astimezone(ZoneInfo(zone))) == (start, end)


def test_a_new_report_covers_the_previous_day():
    assert Report(name="New").covered_period == PREVIOUS_DAY


def test_the_seven_oclock_daily_operations_covers_the_previous_day_so_a_run_at_eight_the_day_before_is_in_it(
    smtp_server, settings
):
    settings.TIME_ZONE = "America/New_York"
    reports_seed()
    report = Report.objects.get(name=DAILY_OPERATIONS)
    report.recipients = "ana@example.com"
    report_save(report=report)
    slot = first_slot_after(report.schedule, utc(2026, 3, 2, 0, 0))
    assert slot == datetime(2026, 3, 2, 7, 0, tzinfo=NEW_YORK)
    for due in (datetime(2026, 3, 1, 0, 0), datetime(2026, 3, 1, 8, 0), datetime(2026, 3, 1, 23, 30)):
        ledger_run(schedule_name="Nightly import", scheduled_for=due.replace(tzinfo=NEW_YORK))
    # Outside the previous day: the evening before it, and this morning before the report.
    for due in (datetime(2026, 2, 28, 23, 59), datetime(2026, 3, 2, 6, 0)):
        ledger_run(schedule_name="Nightly import", scheduled_for=due.replace(tzinfo=NEW_YORK))
    ledger_run(report.schedule, datetime(2026, 3, 1, 7, 0, tzinfo=NEW_YORK))  # yesterday's report, finished

    deliver_from_beat(report, slot)

    (message,) = smtp_server.to("ana@example.com")
    assert message["Subject"] == "Daily operations: Sunday 2026-03-01"
    text = body(message, "plain")
    assert "Covers Sun 2026-03-01 00:00 EST to Mon 2026-03-02 00:00 EST (America/New_York)" in text
    assert "Nightly import | 3 | 3 | 0 | 0 | 0 | 0" in text
    assert "Report: Daily operations | 1 | 1 | 0 | 0 | 0 | 0" in text
    run = ReportRun.objects.get(report=report)
    assert (run.covered_day, run.scheduled_for) == (date(2026, 3, 2), slot)
    assert (run.period_start, run.period_end) == (utc(2026, 3, 1, 5), utc(2026, 3, 2, 5))


def test_the_summary_leaves_out_the_reports_own_unfinished_run(smtp_server):
    report = report_with(summary=True, recipients="ana@example.com", covered_period=DAY_SO_FAR)
    slot = utc(2026, 3, 2, 7, 0)
    ledger_run(schedule_name="Hourly", scheduled_for=utc(2026, 3, 2, 6, 0))

    own = deliver_from_beat(report, slot)

    assert own.status == ScheduleRun.Status.SUCCEEDED, own.error
    (message,) = smtp_server.to("ana@example.com")
    assert message["Subject"] == "Visits: Monday 2026-03-02"
    text = body(message, "plain")
    assert "Hourly | 1 | 1 | 0 | 0 | 0 | 0" in text
    assert "Report: Visits" not in text, "the report's own run was still running while it was built"
    assert ReportRun.objects.get().period_end == slot


def test_a_report_run_late_covers_the_period_of_its_slot_not_of_the_workers_clock(smtp_server, monkeypatch):
    report = report_with(timezone="Europe/Berlin", summary=True, recipients="ana@example.com")
    due = datetime(2026, 3, 2, 7, 0, tzinfo=BERLIN)
    ledger_run(schedule_name="Nightly import", scheduled_for=datetime(2026, 3, 1, 2, 0, tzinfo=BERLIN))
    # The day of the slot and the next one: not counted.
    ledger_run(schedule_name="Nightly import", scheduled_for=datetime(2026, 3, 2, 2, 0, tzinfo=BERLIN))
    ledger_run(schedule_name="Nightly import", scheduled_for=datetime(2026, 3, 3, 0, 15, tzinfo=BERLIN))
    # The worker's clock says 00:30 the next day: beat or the workers were down all day.
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 3, 3, 0, 30, tzinfo=BERLIN).astimezone(UTC))

    report_send.apply(kwargs={"report_id": report.pk}, headers={SCHEDULED_FOR_HEADER: due.isoformat()})

    run = ReportRun.objects.get(report=report)
    assert run.covered_day == date(2026, 3, 2) and run.scheduled_for == due
    (message,) = smtp_server.to("ana@example.com")
    assert message["Subject"] == "Visits: Sunday 2026-03-01"
    assert "Nightly import | 1 | 1 | 0 | 0 | 0 | 0" in body(message, "plain")


def test_on_the_fall_back_day_the_previous_day_is_25_hours_and_both_one_thirties_count():
    report = report_with(timezone="America/New_York", summary=True)
    slot = first_slot_after(report.schedule, utc(2026, 11, 2, 0, 0))
    assert slot == utc(2026, 11, 2, 12, 0)  # 07:00 EST
    ledger_run(schedule_name="Hourly", scheduled_for=utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    ledger_run(schedule_name="Hourly", scheduled_for=utc(2026, 11, 1, 6, 30))  # 01:30 EST
    ledger_run(schedule_name="Hourly", scheduled_for=utc(2026, 11, 2, 4, 30))  # 23:30 EST, same day
    ledger_run(schedule_name="Hourly", scheduled_for=utc(2026, 11, 2, 5, 30))  # 00:30, the report's day
    assert runs_counted(report, slot) == {"Hourly": 3}


def test_a_week_in_the_summary_tells_its_days_apart():
    report = report_with(timezone="America/New_York", summary=True, covered_period=PREVIOUS_WEEK)
    ledger_run(
        schedule_name="Backup",
        scheduled_for=datetime(2026, 3, 4, 2, 0, tzinfo=NEW_YORK),
        status=ScheduleRun.Status.FAILED,
        error="disk full",
    )
    (_, failures, *_) = operations_summary_tables(CoveredPeriod.of(report, utc(2026, 3, 9, 11)))
    assert failures.rows == [("Backup", "Wed 02:00", "Failed", "disk full")]


@pytest.mark.parametrize(
    "zone, send_at, day, slot",
    [
        # 02:30 does not exist that day: the scheduler runs it right after the jump, at 03:00 EDT.
        ("America/New_York", time(2, 30), date(2026, 3, 8), utc(2026, 3, 8, 7, 0)),
        # 01:30 comes twice: the scheduler runs it once, in the first pass (EDT).
        ("America/New_York", time(1, 30), date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),
        # Midnight itself is skipped: due at the jump, 01:00 -03.
        ("America/Santiago", time(0, 0), date(2026, 9, 6), utc(2026, 9, 6, 4, 0)),
    ],
)
def test_a_by_hand_run_is_labelled_with_the_slot_the_scheduler_uses(smtp_server, zone, send_at, day, slot):
    report = report_with(timezone=zone, send_at=send_at, recipients="ana@example.com")
    assert first_slot_after(report.schedule, slot - timedelta(hours=2)) == slot
    assert report.slot_on(day) == slot

    call_command("send_report", report.name, "--date", day.isoformat(), stdout=StringIO(), stderr=StringIO())

    assert ReportRun.objects.get().scheduled_for == slot


def test_a_by_hand_run_on_a_day_the_report_is_not_due_uses_its_time_that_day():
    report = report_with(timezone="America/New_York", days_of_week="mon", send_at=time(7, 0))
    assert report.slot_on(date(2026, 3, 8)) == utc(2026, 3, 8, 11, 0)  # a Sunday, 07:00 EDT


def test_the_email_and_the_archive_show_the_period_covered_with_its_timezone(smtp_server, staff_client):
    report = report_with(
        timezone="America/New_York", summary=True, recipients="ana@example.com", covered_period=LAST_24_HOURS
    )
    run = report_deliver(report=report, slot=utc(2026, 3, 8, 11, 0))  # 07:00 EDT, the spring-forward day
    covers = "Sat 2026-03-07 06:00 EST to Sun 2026-03-08 07:00 EDT (America/New_York)"

    (message,) = smtp_server.to("ana@example.com")
    assert message["Subject"] == "Visits: 24 hours to Sunday 2026-03-08 07:00"
    assert f"Covers {covers}" in body(message, "plain") and f"Covers {covers}" in body(message, "html")
    page = staff_client.get(reverse("admin:reports_reportrun_change", args=[run.pk])).content.decode()
    assert covers in page
    listing = staff_client.get(reverse("admin:reports_reportrun_changelist")).content.decode()
    assert covers in listing


def test_the_seed_covers_the_previous_day_and_a_reseed_keeps_the_period_chosen():
    reports_seed()
    report = Report.objects.get(name=DAILY_OPERATIONS)
    assert report.covered_period == PREVIOUS_DAY
    report.covered_period = LAST_24_HOURS
    report_save(report=report)
    assert reports_seed() == [(DAILY_OPERATIONS, False)]
    assert Report.objects.get(name=DAILY_OPERATIONS).covered_period == LAST_24_HOURS


@pytest.mark.django_db(transaction=True)
def test_migrating_keeps_what_existing_reports_covered_and_records_it_on_archived_runs():
    before = [("reports", "0003_delivery_claim")]
    executor = MigrationExecutor(connection)
    # Forward to the newest migration, not only 0004: the tests after this one share the schema.
    after = executor.loader.graph.leaf_nodes("reports")
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        report = old.get_model("reports", "Report").objects.create(name="Old", timezone="America/New_York")
        old.get_model("reports", "ReportRun").objects.create(
            report=report,
            covered_day=date(2026, 3, 8),
            scheduled_for=utc(2026, 3, 8, 11, 0),
            status="ok",
            built_at=utc(2026, 3, 8, 11, 1),
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(after)

    assert Report.objects.get(name="Old").covered_period == DAY_SO_FAR
    run = ReportRun.objects.get()
    # What its summary was read over: the whole calendar day, 23 hours long that day.
    assert (run.period_start, run.period_end) == (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))
