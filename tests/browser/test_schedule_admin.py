"""A schedule's page and the run ledger, as a staff member sees them in a real browser."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.builders import crontab_of, crontab_task, ledger_run

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
