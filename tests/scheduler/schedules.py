"""Schedules for the scheduler's tests, made as an admin would make them: PeriodicTask rows."""

from datetime import timedelta

from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduler.models import SchedulePolicy


def crontab_task(name: str, cron: str, *, zone: str = "UTC", **fields) -> PeriodicTask:
    minute, hour, day_of_month, month_of_year, day_of_week = cron.split()
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
        day_of_week=day_of_week, timezone=zone,
    )
    return PeriodicTask.objects.create(name=name, task="scheduler.tasks.heartbeat", crontab=crontab, **fields)


def interval_task(name: str, every: timedelta, **fields) -> PeriodicTask:
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=int(every.total_seconds()), period=IntervalSchedule.SECONDS
    )
    return PeriodicTask.objects.create(name=name, task="scheduler.tasks.heartbeat", interval=interval, **fields)


def clocked_task(name: str, at, **fields) -> PeriodicTask:
    clocked = ClockedSchedule.objects.create(clocked_time=at)
    return PeriodicTask.objects.create(
        name=name, task="scheduler.tasks.heartbeat", clocked=clocked, one_off=True, **fields
    )


def with_policy(task: PeriodicTask, **fields) -> PeriodicTask:
    SchedulePolicy.objects.update_or_create(task=task, defaults=fields)
    return PeriodicTask.objects.get(id=task.id)
