"""What reports declare (shared.declarations): the retention of archived runs and previews, and
the "Daily operations" report. A report owns its schedule, so none is declared here."""

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
    RetentionTarget(
        key="report_previews",
        model="reports.ReportPreview",
        description="Previews built for staff in the admin; each is looked at once, right after it is built.",
        age_field="requested_at",
        default_max_age_days=1,
    ),
]

SEEDS = [Seed(what="Report", ensure=reports_seed)]
