"""Admin lists with a column from another table cost the same queries for 2 rows as for 12."""

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cleanup.models import CleanupRun, RetentionPolicy
from reports.models import Report, ReportDelivery, ReportRun
from reports.services import report_save

pytestmark = pytest.mark.django_db


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def reports_with_runs(count: int) -> None:
    start = Report.objects.count()
    for number in range(start, start + count):
        report = report_save(report=Report(name=f"Report {number}", recipients="a@example.com b@example.com"))
        run = ReportRun.objects.create(report=report, covered_day=date(2026, 3, 1) + timedelta(days=number),
                                       scheduled_for=timezone.now(), status="ok", built_at=timezone.now())
        ReportDelivery.objects.bulk_create([ReportDelivery(run=run, recipient="a@example.com", status="sent"),
                                            ReportDelivery(run=run, recipient="b@example.com")])


@pytest.mark.parametrize("url", ["/admin/reports/report/", "/admin/reports/reportrun/"])
def test_the_report_lists_do_not_query_once_per_row(staff_client, url):
    reports_with_runs(2)
    few = queries_for(staff_client, url)
    reports_with_runs(10)
    assert queries_for(staff_client, url) == few


def test_the_retention_policy_list_does_not_query_once_per_row(staff_client):
    def policies_with_runs(count: int) -> None:
        start = RetentionPolicy.objects.count()
        for number in range(start, start + count):
            # Policies of targets no app declares any more are listed too (and may be deleted).
            RetentionPolicy.objects.create(target=f"retired_{number}")
            CleanupRun.objects.create(target=f"retired_{number}", trigger="schedule", status="succeeded",
                                      rows_deleted=3, started_at=timezone.now(), finished_at=timezone.now())

    policies_with_runs(2)
    few = queries_for(staff_client, "/admin/cleanup/retentionpolicy/")
    policies_with_runs(10)
    assert queries_for(staff_client, "/admin/cleanup/retentionpolicy/") == few
