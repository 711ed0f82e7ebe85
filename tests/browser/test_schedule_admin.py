"""A schedule's page and the run ledger, as a staff member sees them in a real browser."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.builders import crontab_of, crontab_task, interval_every, ledger_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_schedule_page_shows_its_next_run_times_and_policy_and_the_ledger_lists_its_runs(logged_in):
    task = crontab_task("Morning report", "30 6 * * *", zone="Europe/Berlin")
    ledger_run(task, timezone.now() - timedelta(hours=1), status="failed", took=4, worker="celery@web-1",
               error="ValueError: no recipients")

    logged_in.get(f"{logged_in.base_url}/admin/django_celery_beat/periodictask/{task.pk}/change/")
    times = [item.text for item in logged_in.find_elements(By.CSS_SELECTOR, "ol.next-runs li")]
    assert len(times) == 5 and all(" 06:30 CE" in shown for shown in times), times
    assert "At 06:30 AM (Europe/Berlin)" in logged_in.find_element(By.CSS_SELECTOR, ".field-in_words").text
    policy = logged_in.find_element(By.ID, "scheduler_policy-group")
    assert policy.find_element(By.TAG_NAME, "h2").text.lower() == "missed and overlapping runs, and health"
    assert "This schedule follows these defaults until you change them." in policy.text
    for label in ("Missed runs:", "Catch-up limit:", "Starting deadline (seconds):", "Overlap:",
                  "Start grace (seconds):", "Failures before failing:"):
        assert label in policy.text
    assert policy.find_element(By.NAME, "scheduler_policy-0-starting_deadline_seconds").get_attribute("value") == "60"

    logged_in.find_element(By.LINK_TEXT, "All runs of this schedule in the run ledger").click()
    [row] = logged_in.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert "Morning report" in row.text and "Failed" in row.text and "4.0 s" in row.text
    assert "1 schedule run" in logged_in.find_element(By.CSS_SELECTOR, ".paginator").text
    filters = logged_in.find_element(By.ID, "changelist-filter").text
    assert "By schedule" in filters and "By status" in filters and "By kind" in filters


def test_a_new_schedule_previews_its_next_runs_before_it_is_saved(logged_in):
    crontab_of("30 2 * * 1-5", zone="Europe/Berlin")
    logged_in.get(f"{logged_in.base_url}/admin/django_celery_beat/periodictask/add/")
    logged_in.find_element(By.NAME, "name").send_keys("Weekday export")
    Select(logged_in.find_element(By.NAME, "regtask")).select_by_value("scheduler.tasks.heartbeat")
    Select(logged_in.find_element(By.NAME, "crontab")).select_by_index(1)
    logged_in.find_element(By.NAME, "_preview").click()

    times = [item.text for item in logged_in.find_elements(By.CSS_SELECTOR, "ol.next-runs li")]
    assert len(times) == 5 and all(" 02:30 CE" in shown and shown[:3] not in ("Sat", "Sun") for shown in times), times
    assert "Not saved yet." in logged_in.find_element(By.CSS_SELECTOR, ".field-next_runs").text
    assert not PeriodicTask.objects.filter(name="Weekday export").exists()

    logged_in.find_element(By.NAME, "_save").click()
    logged_in.find_element(By.CSS_SELECTOR, ".messagelist .success")
    assert PeriodicTask.objects.get(name="Weekday export").crontab.hour == "2"


def test_choosing_the_http_call_shows_its_fields_hides_the_commands_and_saves_its_kwargs(logged_in):
    interval_every(timedelta(minutes=5))
    logged_in.get(f"{logged_in.base_url}/admin/django_celery_beat/periodictask/add/")
    url = logged_in.find_element(By.NAME, "jobs_http_call__url")
    command = logged_in.find_element(By.NAME, "jobs_run_command__command")
    assert not url.is_displayed() and not command.is_displayed()
    task = Select(logged_in.find_element(By.NAME, "regtask"))
    # A command picked, then another task chosen: what the hidden box holds is not saved.
    task.select_by_value("jobs.run_command")
    assert command.is_displayed() and not url.is_displayed()
    Select(command).select_by_value("cleanup")

    task.select_by_value("jobs.http_call")
    assert url.is_displayed() and not command.is_displayed()
    assert not logged_in.find_element(By.NAME, "jobs_run_command__arguments").is_displayed()
    logged_in.find_element(By.NAME, "name").send_keys("Ping ops")
    Select(logged_in.find_element(By.NAME, "interval")).select_by_index(1)
    url.send_keys("https://ops.example.com/hooks/nightly")
    Select(logged_in.find_element(By.NAME, "jobs_http_call__method")).select_by_value("POST")
    logged_in.find_element(By.NAME, "jobs_http_call__expected_status").send_keys("200, 204")
    logged_in.find_element(By.NAME, "jobs_http_call__headers").send_keys("X-Team: ops")
    logged_in.find_element(By.NAME, "_save").click()

    logged_in.find_element(By.CSS_SELECTOR, ".messagelist .success")
    schedule = PeriodicTask.objects.get(name="Ping ops")
    assert schedule.task == "jobs.http_call"
    assert json.loads(schedule.kwargs) == {"url": "https://ops.example.com/hooks/nightly", "method": "POST",
                                           "expected_status": [200, 204], "headers": {"X-Team": "ops"}}
