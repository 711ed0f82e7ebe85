"""Rows written past the admin (the ORM, SQL) that cannot be scheduled: reported on that schedule
only; the admin pages still render, beat goes on with the others."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from scheduler.claim import due_runs_claim
from scheduler.models import ScheduleRun, ScheduleState
from scheduler.sync import schedules_sync
from tests.builders import crontab_task, interval_task

pytestmark = pytest.mark.django_db


def test_a_crontab_with_an_invalid_timezone_is_reported_on_its_schedule_and_nothing_else_stops(staff_client):
    broken = crontab_task("Broken zone", "* * * * *")
    fine = interval_task("Fine", timedelta(minutes=1))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE django_celery_beat_crontabschedule SET timezone = %s WHERE id = %s",
                       ["Mars/Olympus_Mons", broken.crontab_id])
    now = timezone.now()
    schedules_sync(now=now - timedelta(minutes=2))
    due_runs_claim(now=now, node="beat-1")
    assert "Mars/Olympus_Mons" in ScheduleState.objects.get(task_id=broken.pk).problem
    assert ScheduleRun.objects.filter(schedule=fine).exists()
    pages = ("/admin/django_celery_beat/periodictask/", f"/admin/django_celery_beat/periodictask/{broken.pk}/change/",
             "/admin/", "/admin/scheduler/schedulerun/")
    for path in pages:
        assert staff_client.get(path).status_code == 200, path
