"""What monitoring declares (shared.declarations): its alert settings on each schedule's page,
and the retention of flips (with their deliveries), stopped evaluators' heartbeats and the
dashboard's hourly summaries of the ledger."""

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
    RetentionTarget(
        key="ledger_hours",
        model="monitoring.LedgerHour",
        description="The dashboard's summaries of settled hours of the run ledger (it shows 7 days).",
        age_field="hour",
        default_max_age_days=30,
    ),
]
