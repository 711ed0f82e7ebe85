from cleanup.targets import RetentionTarget

RETENTION_TARGETS = [
    RetentionTarget(
        key="worker_heartbeats",
        model="scheduler.WorkerHeartbeat",
        description="Heartbeat rows of workers that have not beaten for a long time (retired machines).",
        age_field="last_beat_at",
        default_max_age_days=30,
    ),
]
