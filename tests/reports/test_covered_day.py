"""The day a report covers comes from its slot in the report's timezone, not the worker's clock."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from reports.models import ReportRun
from reports.sections import CoveredDay, operations_summary_tables
from reports.tasks import report_send
from scheduler.messages import SCHEDULED_FOR_HEADER
from scheduler.timing import first_slot_after
from tests.builders import ledger_run
from tests.reports.conftest import report_with

pytestmark = pytest.mark.django_db

BERLIN, NEW_YORK, AUCKLAND = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Pacific/Auckland")


def runs_counted(report, day: date) -> dict:
    (outcomes, *_) = operations_summary_tables(CoveredDay.of(report, day))
    return {row[0]: row[1] for row in outcomes.rows}


def test_a_report_due_at_seven_that_runs_at_half_past_midnight_the_next_day_covers_the_due_day(
        smtp_server, monkeypatch):
    report = report_with(timezone="Europe/Berlin", summary=True, recipients="ana@example.com")
    due = datetime(2026, 3, 2, 7, 0, tzinfo=BERLIN)
    ledger_run(schedule_name="Nightly import", scheduled_for=datetime(2026, 3, 2, 2, 0, tzinfo=BERLIN))
    # The next day's: not counted.
    ledger_run(schedule_name="Nightly import", scheduled_for=datetime(2026, 3, 3, 0, 15, tzinfo=BERLIN))
    # The worker's clock says 00:30 the next day: beat or the workers were down all day.
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 3, 3, 0, 30, tzinfo=BERLIN).astimezone(UTC))

    report_send.apply(kwargs={"report_id": report.pk}, headers={SCHEDULED_FOR_HEADER: due.isoformat()})

    run = ReportRun.objects.get(report=report)
    assert run.covered_day == date(2026, 3, 2) and run.scheduled_for == due
    (message,) = smtp_server.to("ana@example.com")
    assert message["Subject"] == "Visits: Monday 2026-03-02"
    assert runs_counted(report, date(2026, 3, 2)) == {"Nightly import": 1}


def test_the_covered_day_is_the_date_where_the_report_is_read_not_in_utc():
    report = report_with(timezone="Pacific/Auckland", recipients="ana@example.com")
    slot = first_slot_after(report.schedule, datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    # 07:00 in Auckland (NZST, +12) is 19:00 UTC the evening before.
    assert slot == datetime(2026, 6, 1, 19, 0, tzinfo=UTC)
    assert report.covered_day(slot) == date(2026, 6, 2)


def test_on_the_spring_forward_day_the_report_is_due_at_seven_local_and_covers_23_hours():
    report = report_with(timezone="America/New_York", summary=True)
    before = first_slot_after(report.schedule, datetime(2026, 3, 7, 0, 0, tzinfo=UTC))
    on_the_day = first_slot_after(report.schedule, before)
    assert before == datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # EST, -5
    assert on_the_day == datetime(2026, 3, 8, 11, 0, tzinfo=UTC)  # EDT, -4
    assert report.covered_day(on_the_day) == date(2026, 3, 8)
    start, end = report.day_bounds(date(2026, 3, 8))
    assert end - start == timedelta(hours=23)

    ledger_run(schedule_name="Hourly", scheduled_for=datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK))
    # 02:30 does not exist that day.
    ledger_run(schedule_name="Hourly", scheduled_for=datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK))
    ledger_run(schedule_name="Hourly", scheduled_for=datetime(2026, 3, 8, 23, 30, tzinfo=NEW_YORK))
    ledger_run(schedule_name="Hourly", scheduled_for=datetime(2026, 3, 9, 0, 30, tzinfo=NEW_YORK))
    assert runs_counted(report, date(2026, 3, 8)) == {"Hourly": 3}


def test_on_the_fall_back_day_the_covered_day_is_25_hours_and_both_one_thirties_count():
    report = report_with(timezone="America/New_York", summary=True)
    start, end = report.day_bounds(date(2026, 11, 1))
    assert end - start == timedelta(hours=25)
    first_half_past_one = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)   # 01:30 EDT
    second_half_past_one = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    ledger_run(schedule_name="Hourly", scheduled_for=first_half_past_one)
    ledger_run(schedule_name="Hourly", scheduled_for=second_half_past_one)
    # 23:30 EST, same day.
    ledger_run(schedule_name="Hourly", scheduled_for=datetime(2026, 11, 2, 4, 30, tzinfo=UTC))
    assert runs_counted(report, date(2026, 11, 1)) == {"Hourly": 3}
    assert report.covered_day(first_slot_after(report.schedule, start)) == date(2026, 11, 1)
