from datetime import timedelta

from scheduler.default_schedules import DefaultSchedule

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
