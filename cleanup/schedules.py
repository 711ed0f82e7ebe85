from scheduler.default_schedules import DefaultSchedule

DEFAULT_SCHEDULES = [
    DefaultSchedule(
        name="Expired session cleanup",
        task="cleanup.tasks.purge_expired_sessions",
        crontab="0 * * * *",
        description=(
            "Every hour, on the hour: removes expired Django sessions in short batches. "
            "Tune it under Cleanup › Retention policies (sessions)."
        ),
    ),
    DefaultSchedule(
        name="Daily retention sweep",
        task="cleanup.tasks.retention_sweep_all",
        crontab="30 3 * * *",
        description=(
            "Every day at 03:30: removes what each enabled retention policy lets go (sessions, "
            "task results, old run records...). Policies are under Cleanup › Retention policies."
        ),
    ),
]
