"""Old report runs go through the one retention engine, with their files and deliveries."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from cleanup.models import CleanupRun
from cleanup.services import retention_policy_for, target_purge
from cleanup.targets import retention_targets
from reports.models import ReportDelivery, ReportFile, ReportRun
from reports.services import report_deliver
from tests.reports.conftest import chart_section, report_with

pytestmark = pytest.mark.django_db


def test_old_runs_are_removed_with_their_files_and_deliveries_and_recent_ones_kept():
    report = report_with(sql=[chart_section()])
    today = timezone.now().date()
    for age in (400, 300, 1):
        day = today - timedelta(days=age)
        report_deliver(report=report, slot=report.slot_on(day))
    target = retention_targets()["report_runs"]
    policy = retention_policy_for(target=target)
    policy.keep_last = 1
    policy.save()

    run = target_purge(target=target, policy=policy, dry_run=False, trigger=CleanupRun.Trigger.COMMAND)

    assert (run.status, run.rows_deleted) == ("succeeded", 2), run.error
    (kept,) = ReportRun.objects.all()
    assert kept.covered_day == today - timedelta(days=1)
    assert set(ReportFile.objects.values_list("run", flat=True)) == {kept.pk}
    assert set(ReportDelivery.objects.values_list("run", flat=True)) == {kept.pk}


def test_the_newest_runs_of_each_report_are_kept_however_old():
    report = report_with(sql=[chart_section()])
    report_deliver(report=report, slot=datetime(2020, 1, 1, 7, tzinfo=UTC))
    target = retention_targets()["report_runs"]
    run = target_purge(target=target, policy=retention_policy_for(target=target), dry_run=False,
                       trigger=CleanupRun.Trigger.COMMAND)
    assert run.status == "succeeded" and ReportRun.objects.count() == 1
