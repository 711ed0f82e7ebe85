from cleanup.targets import RetentionTarget

RETENTION_TARGETS = [
    RetentionTarget(
        key="worker_heartbeats",
        model="scheduler.WorkerHeartbeat",
        description="Heartbeat rows of workers that have not beaten for a long time (retired machines).",
        age_field="last_beat_at",
        default_max_age_days=30,
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
