from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from cleanup.models import CleanupRun, RetentionPolicy
from shared.admin_pages import newest_of_each

TREND_WINDOWS = {"24 hours": timedelta(days=1), "7 days": timedelta(days=7), "30 days": timedelta(days=30)}


def cleanup_totals(*, start: datetime, end: datetime | None = None) -> list[dict]:
    """Per target, of the runs started in [start, end) (dry runs left out): runs, rows deleted,
    time-budget stops and failures, in target order."""
    runs = CleanupRun.objects.filter(started_at__gte=start, dry_run=False)
    if end is not None:
        runs = runs.filter(started_at__lt=end)
    return list(
        runs.values("target")
        .annotate(
            runs=Count("id"),
            deleted=Sum("rows_deleted"),
            budget_stops=Count("id", filter=Q(status=CleanupRun.Status.STOPPED_ON_BUDGET)),
            failures=Count("id", filter=Q(status=CleanupRun.Status.FAILED)),
        )
        .order_by("target")
    )


def cleanup_trends() -> list[dict]:
    """Per target, cleanup_totals for each of TREND_WINDOWS in order.

    Bounded by the started_at index and by cleanup_runs' own retention, so it stays cheap.
    """
    now = timezone.now()
    empty = {"runs": 0, "deleted": 0, "budget_stops": 0, "failures": 0}
    trends: dict[str, dict] = {}
    for position, length in enumerate(TREND_WINDOWS.values()):
        for row in cleanup_totals(start=now - length):
            trend = trends.setdefault(row["target"], {"target": row["target"], "windows": [empty] * len(TREND_WINDOWS)})
            trend["windows"][position] = row
    return sorted(trends.values(), key=lambda trend: trend["target"])


def last_runs(*, targets: list[str]) -> dict[str, CleanupRun]:
    """Each target's newest run that did the work (not a dry run, not a skip), in one query for a
    page of targets. A skip says only that another run held the target: shown as the last run,
    "Skipped: 0 deleted" hid the run that had just deleted 300,000 sessions."""
    did_the_work = CleanupRun.objects.filter(dry_run=False).exclude(status=CleanupRun.Status.SKIPPED)
    return newest_of_each(did_the_work, link="target", parent_key="target",
                          newest_first=("-started_at", "-id"),
                          parents=RetentionPolicy.objects.filter(target__in=targets))
