"""What monitoring declares (shared.declarations): its alert settings on each schedule's page,
and the retention of flips (with their deliveries) and of stopped evaluators' heartbeats."""

from shared.declarations import RetentionTarget

SCHEDULE_INLINES = ["monitoring.admin.AlertSettingsInline"]

RETENTION_TARGETS = [
    RetentionTarget(
        key="alert_flips",
        model="monitoring.Flip",
        description="Changes of health and their alert deliveries, by when they happened.",
        age_field="at",
        default_max_age_days=180,
    ),
    RetentionTarget(
        key="evaluator_heartbeats",
        model="monitoring.EvaluatorHeartbeat",
        description="Heartbeat rows of evaluator processes that stopped.",
        age_field="last_beat_at",
        default_max_age_days=1,
    ),
]
