"""What reports declare (shared.declarations): the retention of archived runs and the
"Daily operations" report. A report owns its schedule, so none is declared here."""

from reports.services import reports_seed
from shared.declarations import RetentionTarget, Seed

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

SEEDS = [Seed(what="Report", ensure=reports_seed)]
