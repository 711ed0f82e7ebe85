from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from cleanup.models import CleanupRun

TREND_WINDOWS = {"24 hours": timedelta(days=1), "7 days": timedelta(days=7), "30 days": timedelta(days=30)}


def cleanup_trends() -> list[dict]:
    """Per target, for each of TREND_WINDOWS in order: runs, rows deleted, time-budget stops and
    failures (dry runs left out).

    Bounded by the started_at index and by cleanup_runs' own retention, so it stays cheap.
    """
    now = timezone.now()
    empty = {"runs": 0, "deleted": 0, "budget_stops": 0, "failures": 0}
    trends: dict[str, dict] = {}
    for position, length in enumerate(TREND_WINDOWS.values()):
        rows = (
            CleanupRun.objects.filter(started_at__gte=now - length, dry_run=False)
            .values("target")
            .annotate(
                runs=Count("id"),
                deleted=Sum("rows_deleted"),
                budget_stops=Count("id", filter=Q(status=CleanupRun.Status.STOPPED_ON_BUDGET)),
                failures=Count("id", filter=Q(status=CleanupRun.Status.FAILED)),
            )
        )
        for row in rows:
            trend = trends.setdefault(row["target"], {"target": row["target"], "windows": [empty] * len(TREND_WINDOWS)})
            trend["windows"][position] = row
    return sorted(trends.values(), key=lambda trend: trend["target"])
