"""A report's schedule follows the report whoever writes it: the admin, a command, the shell."""

from datetime import time

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from reports.models import Report
from reports.services import report_delete, report_save
from reports.tasks import report_send

pytestmark = pytest.mark.django_db


def test_a_report_saved_from_the_shell_gets_its_schedule_and_keeps_it_in_step():
    report = report_save(report=Report(name="Weekly", recipients="ops@example.com", send_at=time(6, 15),
                                       days_of_week="mon", timezone="Europe/Berlin"))
    schedule = PeriodicTask.objects.get(pk=report.schedule_id)
    assert (schedule.name, schedule.enabled) == ("Report: Weekly", True)
    assert (schedule.crontab.hour, schedule.crontab.minute, schedule.crontab.day_of_week,
            str(schedule.crontab.timezone)) == ("6", "15", "mon", "Europe/Berlin")

    report.recipients = ""
    report_save(report=report)

    schedule.refresh_from_db()
    assert not schedule.enabled, "a report nobody receives never runs"


def test_deleting_a_report_through_its_service_deletes_its_schedule_and_nothing_else():
    kept = report_save(report=Report(name="Kept", recipients="a@example.com"))
    gone = report_save(report=Report(name="Gone", recipients="b@example.com"))

    report_delete(report=gone)

    assert list(PeriodicTask.objects.values_list("name", flat=True)) == ["Report: Kept"]
    assert Report.objects.get().pk == kept.pk


def test_a_report_deleted_past_its_service_loses_its_schedule_at_its_first_run(smtp_server):
    report = report_save(report=Report(name="Gone", recipients="b@example.com"))
    Report.objects.filter(pk=report.pk).delete()  # a queryset's delete, as in the shell
    assert PeriodicTask.objects.filter(name="Report: Gone").exists()

    result = report_send.apply(kwargs={"report_id": report.pk})

    assert result.result == {"skipped": f"report {report.pk} was deleted"}
    assert not PeriodicTask.objects.filter(name="Report: Gone").exists()
    assert smtp_server.received == []


def test_a_report_saves_although_two_identical_crontab_rows_exist():
    for _ in range(2):  # django-celery-beat allows identical rows
        CrontabSchedule.objects.create(minute="0", hour="7", day_of_month="*", month_of_year="*", day_of_week="*",
                                       timezone="UTC")
    report = report_save(report=Report(name="Twice", timezone="UTC", send_at=time(7, 0)))
    assert report.schedule.crontab == CrontabSchedule.objects.order_by("pk").first()
