"""Preview now with a real worker: the web request only starts the build and answers at once
with a page that looks again until the worker on the reports queue has built the email, with
its SQL section's chart, which the page then shows under the email's policy (issue 13.14)."""

import pytest
from django.urls import reverse

from reports.models import ReportPreview
from tests.e2e.processes import worker_argv
from tests.e2e.waiting import wait_until
from tests.reports.conftest import chart_section, report_with

pytestmark = pytest.mark.django_db(transaction=True)

# Slow on purpose, well inside the section's timeout: the page must answer while it runs.
SLOW_COUNTS = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
               "SELECT 'all' AS day, count(*) AS visits FROM n")


def test_a_worker_builds_the_preview_while_the_page_waits_for_it(
    start_process, app_env, app_publishing_to_test_redis, staff_client
):
    report = report_with(summary=True, sql=[chart_section(query=SLOW_COUNTS, timeout_seconds=60)])
    worker = start_process("worker", worker_argv("-Q", "reports"), **app_env)
    worker.wait_for_output("ready", timeout=60)

    started = staff_client.get(reverse("admin:reports_report_preview", args=[report.pk]), {"date": "2026-03-02"})
    assert started.status_code == 302
    first = staff_client.get(started["Location"])
    assert first.status_code == 202 and '<meta http-equiv="refresh"' in first.content.decode()

    shown = wait_until(lambda: (page := staff_client.get(started["Location"])).status_code == 200 and page,
                       timeout=90, what=lambda: f"the preview built: {list(ReportPreview.objects.values())}")
    html = shown.content.decode()
    assert "Runs by outcome" in html and "Visits per day" in html and 'src="data:image/png;base64,' in html
    assert "3000000" in html or "3,000,000" in html
    assert shown["Content-Security-Policy"] == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    preview = ReportPreview.objects.get()
    assert (preview.status, preview.error) == ("ready", "")
    assert "report_preview_build" in worker.output()
