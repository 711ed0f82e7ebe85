"""What the scheduler declares (shared.declarations): its heartbeat schedule, the retention of
its own rows, and the seeding of every app's default schedules."""

from datetime import timedelta

from scheduler.services import schedules_seed
from shared.declarations import DefaultSchedule, RetentionTarget, Seed

DEFAULT_SCHEDULES = [
    DefaultSchedule(
        name="Heartbeat",
        task="scheduler.tasks.heartbeat",
        every=timedelta(minutes=1),
        description=(
            "Every minute beat sends this and a worker records it under Scheduler › Worker "
            "heartbeats. A stale heartbeat means beat, the workers or Redis stopped."
        ),
    ),
]

RETENTION_TARGETS = [
    RetentionTarget(
        key="worker_heartbeats",
        model="scheduler.WorkerHeartbeat",
        description="Heartbeat rows of workers that have not beaten for a long time (retired machines).",
        age_field="last_beat_at",
        default_max_age_days=30,
    ),
    RetentionTarget(
        key="beat_heartbeats",
        model="scheduler.BeatHeartbeat",
        description="Heartbeat rows of beat processes that stopped (each start is a new process and row), "
                    "so the admin does not show them stale forever.",
        age_field="last_beat_at",
        default_max_age_days=1,
    ),
    RetentionTarget(
        key="schedule_runs",
        model="scheduler.ScheduleRun",
        description="The run ledger, by the slot each run was for; the newest few per schedule are kept.",
        age_field="scheduled_for",
        group_field="schedule_name",
        default_max_age_days=90,
        default_keep_last=20,
    ),
]

SEEDS = [Seed(what="Schedule", ensure=schedules_seed)]
