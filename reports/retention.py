from cleanup.targets import RetentionTarget

RETENTION_TARGETS = [
    RetentionTarget(
        key="report_runs",
        model="reports.ReportRun",
        description="Archived report emails with their files and deliveries; the newest few per report are kept.",
        age_field="scheduled_for",
        group_field="report",
        default_max_age_days=180,
        default_keep_last=30,
    ),
]
