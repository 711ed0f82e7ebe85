"""What a staff member sees and does in the admin, in a real browser."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from cleanup.models import CleanupRun
from scheduler.services import heartbeat_record, schedules_seed
from tests.builders import interval_every

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_seeded_schedules_are_listed(logged_in):
    schedules_seed()
    logged_in.get(f"{logged_in.base_url}/admin/django_celery_beat/periodictask/")
    names = {link.text for link in logged_in.find_elements(By.CSS_SELECTOR, "#result_list th a")}
    assert {"Heartbeat", "Expired session cleanup", "Daily retention sweep"} <= names


def test_a_schedule_naming_an_unknown_task_is_refused_with_the_reason_shown(logged_in):
    interval_every(timedelta(minutes=10))
    logged_in.get(f"{logged_in.base_url}/admin/django_celery_beat/periodictask/add/")
    logged_in.find_element(By.NAME, "name").send_keys("Typo schedule")
    logged_in.find_element(By.NAME, "task").send_keys("cleanup.tasks.purge_expired_sesions")
    Select(logged_in.find_element(By.NAME, "interval")).select_by_index(1)
    logged_in.find_element(By.NAME, "_save").click()

    errors = logged_in.find_element(By.CSS_SELECTOR, ".errorlist").text
    assert "There is no task named 'cleanup.tasks.purge_expired_sesions'" in errors
    assert not PeriodicTask.objects.filter(name="Typo schedule").exists()


def test_worker_heartbeats_show_alive_and_stale(logged_in):
    heartbeat_record(worker="celery@web-1")
    gone = heartbeat_record(worker="celery@old-box")
    type(gone).objects.filter(pk=gone.pk).update(last_beat_at=timezone.now() - timedelta(hours=1))
    logged_in.get(f"{logged_in.base_url}/admin/scheduler/workerheartbeat/")
    rows = {row.find_element(By.CSS_SELECTOR, "th").text: row.text
            for row in logged_in.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")}
    assert "alive" in rows["celery@web-1"]
    assert re.search(r"stale: last beat 36\d\d s ago", rows["celery@old-box"])


def test_cleanup_runs_show_trends_per_target(logged_in):
    CleanupRun.objects.create(target="sessions", trigger="schedule", status="stopped_on_budget", rows_deleted=12000,
                              started_at=timezone.now(), finished_at=timezone.now())
    logged_in.get(f"{logged_in.base_url}/admin/cleanup/cleanuprun/")
    trends = logged_in.find_element(By.ID, "cleanup-trends").text
    assert "sessions 12,000 deleted in 1 run" in trends.replace("\n", " ")
    assert "1 stopped on budget" in trends


def test_the_admin_index_warns_that_beat_has_never_run(logged_in):
    logged_in.get(f"{logged_in.base_url}/admin/")
    assert "Beat has never run against this database" in logged_in.find_element(By.ID, "beat-status").text
