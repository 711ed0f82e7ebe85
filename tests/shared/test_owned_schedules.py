"""A row that owns its schedule (a report, a scraping source) owns every field of it
(shared.owned_schedules, issue 13.10): what a periodic-task editor set on the row is rewritten
on the owner's save, and a row planted under the owner's schedule name is taken over without
anything it held."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from reports.models import Report
from reports.services import report_save
from scraping.models import Source
from scraping.sources import source_schedule_sync
from tests.builders import crontab_of, interval_every
from tests.reports.conftest import report_with
from tests.reports.test_admin import report_form

pytestmark = pytest.mark.django_db


def editors_fields() -> dict:
    """What a periodic-task editor could set on a schedule, none of it the owner's."""
    return {
        "task": "scheduler.tasks.heartbeat", "args": "[1]", "kwargs": '{"report_id": 1, "extra": 2}',
        "queue": "cleanup", "exchange": "celeryev", "routing_key": "worker.heartbeat",
        "headers": '{"id": "someone-elses-run", "x-extra": "1"}', "priority": 9, "one_off": True,
        "start_time": timezone.now() + timedelta(days=30), "description": "mine now",
        "crontab": None, "interval": interval_every(timedelta(seconds=1)),
    }


def message_and_timing(schedule: PeriodicTask) -> dict:
    schedule = PeriodicTask.objects.get(pk=schedule.pk)
    return {field: getattr(schedule, field) for field in (
        "task", "args", "kwargs", "queue", "exchange", "routing_key", "headers", "priority", "expires",
        "expire_seconds", "one_off", "start_time", "interval", "crontab", "solar", "clocked", "enabled",
        "description")}


def test_saving_a_report_rewrites_every_field_an_editor_set_on_its_schedule():
    report = report_with(name="Sales", recipients="ana@example.com")
    owned = message_and_timing(report.schedule)
    PeriodicTask.objects.filter(pk=report.schedule_id).update(
        **editors_fields(), expires=timezone.now() + timedelta(hours=1), enabled=False)

    report_save(report=Report.objects.get(pk=report.pk))

    assert message_and_timing(report.schedule) == owned
    assert owned["headers"] == "{}" and owned["exchange"] is None and owned["expires"] is None and owned["enabled"]


def test_a_planted_schedule_named_for_a_new_report_is_taken_over_wholly(staff_client):
    planted = PeriodicTask.objects.create(name="Report: Sales", **editors_fields(), expire_seconds=60,
                                          last_run_at=timezone.now(), total_run_count=7)

    response = staff_client.post(reverse("admin:reports_report_add"), report_form())

    assert response.status_code == 302
    report = Report.objects.get(name="Sales")
    schedule = PeriodicTask.objects.get(pk=report.schedule_id)
    assert schedule.pk == planted.pk and PeriodicTask.objects.filter(name="Report: Sales").count() == 1
    assert message_and_timing(schedule) == {
        "task": "reports.tasks.report_send", "args": "[]", "kwargs": f'{{"report_id": {report.pk}}}', "queue": None,
        "exchange": None, "routing_key": None, "headers": "{}", "priority": None, "expires": None,
        "expire_seconds": None, "one_off": False, "start_time": None, "interval": None,
        "crontab": crontab_of("30 6 * * mon-fri", zone="Europe/Berlin"), "solar": None, "clocked": None,
        "enabled": True, "description": schedule.description,
    }
    assert "Reports › Reports" in schedule.description
    assert (schedule.last_run_at, schedule.total_run_count) == (None, 0)


def test_a_scraping_source_owns_its_schedule_the_same_way():
    source = Source.objects.create(name="Tea prices", url="https://shop.test/prices", every_minutes=10)
    owned = message_and_timing(source_schedule_sync(source=source))
    PeriodicTask.objects.filter(pk=source.schedule_id).update(
        **{**editors_fields(), "interval": None, "crontab": crontab_of("* * * * *")})

    source_schedule_sync(source=Source.objects.get(pk=source.pk))

    assert message_and_timing(source.schedule) == owned
    assert owned["interval"] == interval_every(timedelta(minutes=10)) and owned["queue"] is None
