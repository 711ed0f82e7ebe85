from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduler.claim import run_now_claim
from scheduler.messages import run_headers
from scheduler.models import BeatHeartbeat, ScheduleRun, WorkerHeartbeat
from shared.declarations import DefaultSchedule, declared_default_schedules
from shared.owned_schedules import timing_row


def heartbeat_record(*, worker: str) -> WorkerHeartbeat:
    now = timezone.now()
    beat, _ = WorkerHeartbeat.objects.update_or_create(
        worker=worker,
        defaults={"last_beat_at": now, "beats": F("beats") + 1},
        create_defaults={"first_beat_at": now, "last_beat_at": now, "beats": 1},
    )
    beat.refresh_from_db()  # beats was saved as an expression; read the number back
    return beat


def beat_heartbeat_record(*, node: str, started_at) -> None:
    now = timezone.now()
    BeatHeartbeat.objects.update_or_create(
        node=node, defaults={"last_beat_at": now}, create_defaults={"started_at": started_at, "last_beat_at": now}
    )


def _schedule_fields(declared: DefaultSchedule) -> dict:
    if declared.every is not None:
        return {"interval": timing_row(IntervalSchedule, every=int(declared.every.total_seconds()),
                                       period=IntervalSchedule.SECONDS)}
    minute, hour, day_of_month, month_of_year, day_of_week = declared.crontab.split()
    return {"crontab": timing_row(CrontabSchedule, minute=minute, hour=hour, day_of_month=day_of_month,
                                  month_of_year=month_of_year, day_of_week=day_of_week, timezone=settings.TIME_ZONE)}


def schedules_seed() -> list[tuple[str, bool]]:
    """Create the declared schedules that are missing; return (name, created) for each.

    An existing row keeps everything an admin may have changed (enabled flag, timing,
    arguments, description); only the task path, which is code's to own, is brought up to date.
    """
    seeded = []
    for declared in declared_default_schedules():
        _, created = PeriodicTask.objects.update_or_create(
            name=declared.name,
            defaults={"task": declared.task},
            create_defaults={
                "task": declared.task,
                "enabled": declared.enabled,
                "description": declared.description,
                **_schedule_fields(declared),
            },
        )
        seeded.append((declared.name, created))
    return seeded


def run_here_now(*, schedule: PeriodicTask, task, node: str, **kwargs) -> ScheduleRun:
    """Run `schedule` now in this process, in the ledger as a manual run like the admin's "Run
    now" (for a command a person waits on; `kwargs` are added to the schedule's own)."""
    dispatch = run_now_claim(task=schedule, now=timezone.now(), node=node)
    task.apply(args=dispatch.args, kwargs={**dispatch.kwargs, **kwargs}, task_id=dispatch.task_id,
               headers=run_headers(dispatch), throw=False)
    return ScheduleRun.objects.get(id=dispatch.run_id)
