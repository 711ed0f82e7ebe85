"""Reads for the operations summary: what ran during a covered period, from the run ledger
(cleanup's totals come from cleanup.selectors)."""

from datetime import datetime

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q

from scheduler.models import ScheduleRun

FAILED_STATUSES = (ScheduleRun.Status.FAILED, ScheduleRun.Status.NOT_ENQUEUED, ScheduleRun.Status.MISSED)
OUTCOME_COLUMNS = (
    ScheduleRun.Status.SUCCEEDED, ScheduleRun.Status.FAILED, ScheduleRun.Status.SKIPPED,
    ScheduleRun.Status.MISSED, ScheduleRun.Status.NOT_ENQUEUED,
)


def _runs_due(start: datetime, end: datetime):
    # By the slot a run was for, so a run delivered late still counts in the period it was due.
    return ScheduleRun.objects.filter(scheduled_for__gte=start, scheduled_for__lt=end)


def schedule_outcomes(*, start: datetime, end: datetime) -> list[dict]:
    """Per schedule: its runs due in [start, end), counted by outcome."""
    by_outcome = {status.value: Count("id", filter=Q(status=status)) for status in OUTCOME_COLUMNS}
    return list(
        _runs_due(start, end).values("schedule_name").annotate(total=Count("id"), **by_outcome)
        .order_by("schedule_name")
    )


def failed_runs(*, start: datetime, end: datetime, limit: int = 20) -> list[ScheduleRun]:
    return list(_runs_due(start, end).filter(status__in=FAILED_STATUSES).order_by("scheduled_for", "id")[:limit])


def slowest_runs(*, start: datetime, end: datetime, limit: int = 5) -> list[ScheduleRun]:
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    return list(
        _runs_due(start, end).filter(started_at__isnull=False, finished_at__isnull=False)
        .annotate(took=duration).order_by("-took", "id")[:limit]
    )
