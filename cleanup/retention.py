from cleanup.targets import RetentionTarget

RETENTION_TARGETS = [
    RetentionTarget(
        key="sessions",
        model="sessions.Session",
        description="Django sessions past their expiry date. Live sessions are never touched.",
        expiry_field="expire_date",
    ),
    RetentionTarget(
        key="task_results",
        model="django_celery_results.TaskResult",
        description="Celery task results, by when they finished; the newest few per schedule are kept.",
        age_field="date_done",
        group_field="periodic_task_name",
        default_max_age_days=30,
        default_keep_last=10,
    ),
    RetentionTarget(
        key="cleanup_runs",
        model="cleanup.CleanupRun",
        description="This engine's own run records; the newest few per target are kept.",
        age_field="started_at",
        group_field="target",
        default_max_age_days=90,
        default_keep_last=20,
    ),
]
