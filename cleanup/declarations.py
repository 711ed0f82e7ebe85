"""What cleanup declares (shared.declarations): its two schedules, the retention of sessions,
task results and its own runs, and a policy per retention target."""

from cleanup.services import retention_policies_seed
from shared.declarations import DefaultSchedule, RetentionTarget, Seed

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

SEEDS = [Seed(what="Retention policy", ensure=retention_policies_seed)]
