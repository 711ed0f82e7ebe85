"""Rows for tests, made the way the project makes them: schedules as an admin saves them
(django-celery-beat's PeriodicTask and its timing rows), runs as beat and a worker record them
in the ledger (scheduler.models.ScheduleRun)."""

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduler.models import SchedulePolicy, ScheduleRun

HEARTBEAT = "scheduler.tasks.heartbeat"
# Largest first: an interval is stored in the largest unit it is a whole number of, as an admin
# would enter it, so the admin shows "every 10 minutes", not "every 600 seconds".
PERIODS = ((IntervalSchedule.DAYS, 86400), (IntervalSchedule.HOURS, 3600), (IntervalSchedule.MINUTES, 60),
           (IntervalSchedule.SECONDS, 1))


def interval_every(every: timedelta) -> IntervalSchedule:
    seconds = int(every.total_seconds())
    period, unit = next((period, unit) for period, unit in PERIODS if seconds % unit == 0)
    interval, _ = IntervalSchedule.objects.get_or_create(every=seconds // unit, period=period)
    return interval


def crontab_of(cron: str, *, zone: str = "UTC") -> CrontabSchedule:
    """The crontab of a five-field cron line ("30 2 * * *") in `zone`."""
    minute, hour, day_of_month, month_of_year, day_of_week = cron.split()
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
        day_of_week=day_of_week, timezone=zone,
    )
    return crontab


def clocked_at(at: datetime) -> ClockedSchedule:
    return ClockedSchedule.objects.create(clocked_time=at)


def periodic_task(name: str, *, task: str = HEARTBEAT, **fields) -> PeriodicTask:
    """A schedule of `task` (the heartbeat unless told), with its timing and other fields as given."""
    return PeriodicTask.objects.create(name=name, task=task, **fields)


def interval_task(name: str, every: timedelta, **fields) -> PeriodicTask:
    return periodic_task(name, interval=interval_every(every), **fields)


def crontab_task(name: str, cron: str, *, zone: str = "UTC", **fields) -> PeriodicTask:
    return periodic_task(name, crontab=crontab_of(cron, zone=zone), **fields)


def clocked_task(name: str, at: datetime, **fields) -> PeriodicTask:
    return periodic_task(name, clocked=clocked_at(at), one_off=True, **fields)


def due_once_at(task: PeriodicTask, at: datetime) -> PeriodicTask:
    """`task` pointed at one clocked time instead of its timing, as an admin could on its page."""
    task.crontab = task.interval = None
    task.clocked = clocked_at(at)
    task.one_off = True
    task.save()
    return task


def with_policy(task: PeriodicTask, **fields) -> PeriodicTask:
    """`task` with its missed-run and overlap policy set as given, as the admin's inline saves it."""
    SchedulePolicy.objects.update_or_create(task=task, defaults=fields)
    return PeriodicTask.objects.get(id=task.id)


def ledger_run(schedule: PeriodicTask | None = None, scheduled_for: datetime | None = None, **fields) -> ScheduleRun:
    """A run of `schedule` in the ledger; see `unsaved_ledger_run` for what it holds unless told."""
    run = unsaved_ledger_run(schedule, scheduled_for, **fields)
    run.save()
    return run


def ledger_runs(schedule: PeriodicTask, slots: Iterable[datetime], **fields) -> list[ScheduleRun]:
    """One run of `schedule` for each slot, inserted together."""
    return ScheduleRun.objects.bulk_create(unsaved_ledger_run(schedule, slot, **fields) for slot in slots)


def unsaved_ledger_run(schedule: PeriodicTask | None = None, scheduled_for: datetime | None = None, *,
                       status: str = ScheduleRun.Status.SUCCEEDED, took: float | None = None,
                       **fields) -> ScheduleRun:
    """A run as beat claims it, for the slot `scheduled_for` (default now), in `status`
    (succeeded unless told); `took` seconds from its slot to its end, when given.

    Without a schedule, pass `schedule_name`: a run whose schedule only its history still names.
    """
    slot = scheduled_for or timezone.now()
    timing = {} if took is None else {"started_at": slot, "finished_at": slot + timedelta(seconds=took)}
    return ScheduleRun(**{
        "schedule": schedule, "schedule_name": schedule.name if schedule else "",
        "task_name": schedule.task if schedule else HEARTBEAT, "scheduled_for": slot, "status": status,
        "task_id": str(uuid.uuid4()), "claimed_by": "beat", "claimed_at": slot, **timing, **fields,
    })
