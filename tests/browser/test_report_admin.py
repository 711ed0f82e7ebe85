"""A superuser defines a report in the admin and previews it, in a real browser; a real worker
builds the preview."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from reports.models import Report, ReportRun
from tests.e2e.processes import worker_argv

pytestmark = pytest.mark.django_db(transaction=True)

SCHEDULES_PER_TASK = (
    "SELECT task, count(*) AS schedules FROM django_celery_beat_periodictask GROUP BY task ORDER BY task"
)


def add_inline(browser, prefix: str) -> str:
    """Click the inline group's "Add another" link; the new form's field-name prefix."""
    group = browser.find_element(By.ID, f"{prefix}-group")
    group.find_element(By.CSS_SELECTOR, ".add-row a").click()
    return f"{prefix}-0-"


def fill(browser, fields: dict) -> None:
    for name, value in fields.items():
        element = browser.find_element(By.NAME, name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)


def test_a_superuser_creates_a_report_with_a_summary_and_a_chart_and_previews_it(
    logged_in, start_process, app_env, app_publishing_to_test_redis
):
    browser = logged_in
    start_process("worker", worker_argv("-Q", "reports"), **app_env)
    browser.get(f"{browser.base_url}/admin/reports/report/add/")
    fill(browser, {"name": "Morning operations", "recipients": "ana@example.com\nbo@example.com"})
    summary = add_inline(browser, "operations_summary_sections")
    fill(browser, {f"{summary}position": "1", f"{summary}name": "Operations summary"})
    sql = add_inline(browser, "sql_sections")
    fill(browser, {f"{sql}position": "2", f"{sql}name": "Schedules per task", f"{sql}query": SCHEDULES_PER_TASK,
                   f"{sql}chart": "bar", f"{sql}chart_x": "task", f"{sql}chart_y": "schedules"})
    browser.find_element(By.NAME, "_continue").click()

    assert "was added successfully" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    report = Report.objects.get(name="Morning operations")
    assert [(s.kind, s.name) for s in report.sections.all()] == [
        ("operations_summary", "Operations summary"), ("sql", "Schedules per task")]
    assert "Report: Morning operations" in browser.find_element(By.CSS_SELECTOR, ".field-schedule_link").text

    editor = browser.current_window_handle
    # By its text in the page: the admin's CSS shows object tools in capitals.
    browser.find_element(By.XPATH, "//ul[@class='object-tools']//a[normalize-space()='Preview now']").click()
    WebDriverWait(browser, 10).until(lambda b: len(b.window_handles) == 2)
    browser.switch_to.window(next(handle for handle in browser.window_handles if handle != editor))

    # The page looks again by itself until the worker has built the email.
    WebDriverWait(browser, 90).until(lambda b: "Runs by outcome" in b.find_element(By.TAG_NAME, "body").text)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "Morning operations" in page and "Operations summary" in page and "Runs by outcome" in page
    assert "reports.tasks.report_send" in page and "section failed" not in page.lower()
    chart = browser.find_element(By.CSS_SELECTOR, "img[alt='Schedules per task chart']")
    WebDriverWait(browser, 10).until(lambda b: b.execute_script("return arguments[0].complete", chart))
    assert browser.execute_script("return arguments[0].naturalWidth", chart) > 0
    assert chart.size["width"] > 0 and chart.is_displayed()
    # A preview sends nothing and archives no run.
    assert not ReportRun.objects.exists()
