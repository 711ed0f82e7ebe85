"""An operator opens the monitoring dashboard in a real browser: its charts are drawn, and the
page asks nothing of any host but the site's own (the admin works offline)."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By

from scheduler.models import ScheduleRun, WorkerHeartbeat
from tests.builders import interval_task, ledger_run, unsaved_ledger_run

pytestmark = pytest.mark.django_db(transaction=True)

HOUR, MINUTE, SECOND = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}
# Every resource the page loaded, as the browser recorded it, and every address it names.
RESOURCES = "return performance.getEntriesByType('resource').map(entry => entry.name)"
ADDRESSES = ("return Array.from(document.querySelectorAll('[src], [href]'))"
             ".map(element => element.getAttribute('src') || element.getAttribute('href'))")


def a_day_of_runs(now):
    """Runs in three of the last hours (four outcomes in all), timed; a worker running one now."""
    task = interval_task("Import orders", MINUTE)
    hour = now.replace(minute=0, second=0, microsecond=0)
    slots = [hour - 3 * HOUR + k * MINUTE for k in range(4)] + [hour - HOUR + k * MINUTE for k in range(3)]
    statuses = ["succeeded", "succeeded", "failed", "missed", "succeeded", "skipped", "succeeded"]
    ScheduleRun.objects.bulk_create(
        unsaved_ledger_run(task, slot, status=status, sent_at=slot + SECOND, started_at=slot + 2 * SECOND,
                           finished_at=slot + 30 * SECOND)
        for slot, status in zip(slots, statuses, strict=True))
    WorkerHeartbeat.objects.create(worker="celery@alpha", first_beat_at=now, last_beat_at=now)
    ledger_run(task, now, status="running", sent_at=now, started_at=now, worker="celery@alpha:12:ab34")


def visible_boxes(browser, selector: str) -> list[dict]:
    return [element.rect for element in browser.find_elements(By.CSS_SELECTOR, selector) if element.is_displayed()]


def test_the_dashboard_draws_its_charts_and_asks_no_other_host(logged_in, settings, redis_url):
    settings.CELERY_BROKER_URL = redis_url
    a_day_of_runs(timezone.now())

    logged_in.get(f"{logged_in.base_url}/admin/monitoring/dashboard/")

    runs = logged_in.find_element(By.ID, "chart-runs")
    assert runs.is_displayed() and runs.rect["width"] > 500 and runs.rect["height"] > 100
    assert len(logged_in.find_elements(By.CSS_SELECTOR, "#chart-runs g.bar")) == 24
    # Three hours with runs, 3 + 2 + 1 outcomes among them (the current hour's run is running).
    segments = visible_boxes(logged_in, "#chart-runs rect.segment")
    assert len(segments) == 6 and all(box["height"] > 0 and box["width"] > 0 for box in segments)
    for chart in ("lag", "wait"):
        assert logged_in.find_element(By.ID, f"chart-{chart}").is_displayed()
        assert len(visible_boxes(logged_in, f"#chart-{chart} .series-p95 circle")) == 3
    assert visible_boxes(logged_in, "#chart-slowest rect.segment")
    assert "Import orders" in logged_in.find_element(By.ID, "workers").text
    assert "Redis unreachable" not in logged_in.find_element(By.ID, "queues").text

    loaded = logged_in.execute_script(RESOURCES)
    assert loaded and {urlsplit(url).hostname for url in loaded} <= LOOPBACK
    for address in logged_in.execute_script(ADDRESSES):
        assert urlsplit(address).hostname in LOOPBACK | {None}, address

    logged_in.find_element(By.LINK_TEXT, "Last 7 days").click()
    assert logged_in.find_element(By.CSS_SELECTOR, "[aria-current=page]").text == "Last 7 days"
    assert len(logged_in.find_elements(By.CSS_SELECTOR, "#chart-runs g.bar")) == 7 * 24
    assert len(visible_boxes(logged_in, "#chart-runs rect.segment")) == 6
