from scheduler.default_schedules import DefaultSchedule

DEFAULT_SCHEDULES = [
    DefaultSchedule(
        name="Expired session cleanup",
        task="cleanup.tasks.purge_expired_sessions",
        crontab="0 * * * *",
        description="Every hour, on the hour: removes expired Django sessions.",
    ),
]
