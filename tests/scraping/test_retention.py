"""Old snapshots and fetch records go through the one retention engine; what a reviewer still
needs (the baseline, both sides of a pending change, rejected content) is never removed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cleanup.models import CleanupRun
from cleanup.services import retention_policy_for, target_purge
from cleanup.targets import retention_targets
from scraping.models import Change, FetchRecord, Snapshot, Source
from scraping.sources import source_save
from shared.links import linked

pytestmark = pytest.mark.django_db


def purge(key: str) -> CleanupRun:
    target = retention_targets()[key]
    policy = retention_policy_for(target=target)
    policy.max_age_days, policy.keep_last = 30, 0
    policy.save()
    return target_purge(target=target, policy=policy, dry_run=False, trigger=CleanupRun.Trigger.COMMAND)


def test_old_snapshots_go_but_the_baseline_pending_and_rejected_ones_stay():
    source = source_save(source=Source(name="Prices", url="https://example.com/"))
    old = timezone.now() - timedelta(days=400)

    def snapshot(text: str) -> Snapshot:
        return Snapshot.objects.create(source=source, content_hash=text.ljust(64, "0"), text=text,
                                       first_seen_at=old, last_seen_at=old)
    baseline, pending, rejected, approved_before, gone = (snapshot(text) for text in
                                                          ("base", "pend", "rej", "appr", "gone"))
    Source.objects.filter(pk=source.pk).update(baseline=baseline)
    Change.objects.create(source=source, before=approved_before, after=pending, diff="", raised_at=old)
    Change.objects.create(source=source, before=baseline, after=rejected, diff="", raised_at=old,
                          status=Change.Status.REJECTED)
    # What still points at the snapshot that goes: an approved change raised for it, and the fetch
    # that stored it. The raw DELETE takes the change with it, and leaves the fetch's link empty.
    old_change = Change.objects.create(source=source, before=baseline, after=gone, diff="", raised_at=old,
                                       status=Change.Status.APPROVED)
    FetchRecord.objects.create(source=source, fetched_at=old, outcome="fetched", snapshot=gone, change=old_change)

    run = purge("scraping_snapshots")

    assert (run.status, run.rows_deleted) == ("succeeded", 1), run.error
    assert set(Snapshot.objects.values_list("text", flat=True)) == {"base", "pend", "rej", "appr"}
    assert not Change.objects.filter(pk=old_change.pk).exists()
    record = FetchRecord.objects.get()
    assert linked(record, "snapshot") is None and linked(record, "change") is None


def test_old_fetch_records_go_and_recent_ones_stay():
    source = source_save(source=Source(name="Prices", url="https://example.com/"))
    now = timezone.now()
    for age in (400, 60, 1):
        FetchRecord.objects.create(source=source, fetched_at=now - timedelta(days=age), outcome="fetched")

    run = purge("scraping_fetches")

    assert (run.status, run.rows_deleted) == ("succeeded", 2), run.error
    assert FetchRecord.objects.get().fetched_at > now - timedelta(days=2)


def test_old_ledger_runs_go_although_fetches_changes_and_flips_name_them():
    from monitoring.models import Flip
    from scheduler.models import ScheduleRun
    from tests.builders import interval_task, ledger_run

    source = source_save(source=Source(name="Prices", url="https://example.com/"))
    task = interval_task("Old job", timedelta(minutes=1))
    old_run = ledger_run(task, timezone.now() - timedelta(days=400))
    snapshot = Snapshot.objects.create(source=source, content_hash="a" * 64, text="a", first_seen_at=timezone.now(),
                                       last_seen_at=timezone.now())
    Change.objects.create(source=source, after=snapshot, diff="", raised_at=timezone.now(), run=old_run)
    FetchRecord.objects.create(source=source, fetched_at=timezone.now(), outcome="fetched", run=old_run)
    Flip.objects.create(schedule=task, schedule_name=task.name, from_state="up", to_state="down", why="",
                        at=timezone.now(), run=old_run)

    run = purge("schedule_runs")

    assert (run.status, run.rows_deleted) == ("succeeded", 1), run.error
    assert not ScheduleRun.objects.exists()
    assert linked(Change.objects.get(), "run") is None and linked(Flip.objects.get(), "run") is None
