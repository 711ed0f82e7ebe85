from django.contrib import admin

from cleanup.models import CleanupRun, RetentionPolicy
from cleanup.selectors import TREND_WINDOWS, cleanup_trends, last_runs
from cleanup.targets import retention_targets
from shared.admin_pages import PageCompletingAdmin
from shared.admin_review import ReviewOnlyAdmin
from shared.badges import badge
from shared.display import duration_in_words, moment

STATUS_TONES = {
    CleanupRun.Status.RUNNING: "busy",
    CleanupRun.Status.SUCCEEDED: "good",
    CleanupRun.Status.STOPPED_ON_BUDGET: "warning",
    CleanupRun.Status.SKIPPED: "quiet",
    CleanupRun.Status.FAILED: "bad",
}


def cleanup_status_badge(run: CleanupRun) -> str:
    return badge(run.get_status_display(), STATUS_TONES.get(run.status, "quiet"), status=f"cleanup-{run.status}")


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(PageCompletingAdmin, admin.ModelAdmin):
    list_display = ["target", "what", "enabled", "max_age_days", "keep_last", "batch_size", "batch_target_ms",
                    "time_budget_seconds", "last_run"]
    list_editable = [
        "enabled", "max_age_days", "keep_last", "batch_size", "batch_target_ms", "time_budget_seconds",
    ]
    readonly_fields = ["target", "what", "updated_at"]
    fields = ["target", "what", "enabled", "max_age_days", "keep_last", "batch_size", "batch_target_ms",
              "time_budget_seconds", "updated_at"]

    # Targets are declared in code; a policy exists for each and is edited, never added or
    # removed, except the policy of a target no app declares any more.
    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return obj is not None and obj.target not in retention_targets() and super().has_delete_permission(request, obj)

    @admin.display(description="what it removes")
    def what(self, policy: RetentionPolicy) -> str:
        target = retention_targets().get(policy.target)
        return target.description if target else "unknown target: not run"

    def page_complete(self, rows: list[RetentionPolicy]) -> None:
        runs = last_runs(targets=[policy.target for policy in rows])
        for policy in rows:
            policy.last_cleanup_run = runs.get(policy.target)

    @admin.display(description="last run")
    def last_run(self, policy: RetentionPolicy) -> str:
        run = getattr(policy, "last_cleanup_run", None)
        if run is None:
            return "never"
        return f"{run.get_status_display()}: {run.rows_deleted} deleted, {moment(run.started_at)}"


@admin.register(CleanupRun)
class CleanupRunAdmin(ReviewOnlyAdmin):
    list_display = ["started", "target", "status_badge", "trigger", "kind", "rows_matched", "rows_deleted",
                    "batches", "duration", "why"]
    list_filter = ["target", "status", "trigger", "dry_run"]
    date_hierarchy = "started_at"
    change_list_template = "admin/cleanup/cleanuprun/change_list.html"

    @admin.display(description="started at", ordering="started_at")
    def started(self, run: CleanupRun) -> str:
        # To the second, as the run ledger shows it: Django's default ("9:34 a.m.") made two runs
        # of the same minute look alike.
        return moment(run.started_at)

    @admin.display(description="error, or why skipped")
    def why(self, run: CleanupRun) -> str:
        # A skipped run's reason (another run holds the target) is kept where a failure's error
        # is; headed "error", it read as one.
        return run.error

    @admin.display(description="kind")
    def kind(self, run: CleanupRun) -> str:
        # Words, not the boolean icon: a red cross beside a real run read as a failure.
        return "dry run" if run.dry_run else "delete"

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: CleanupRun) -> str:
        return cleanup_status_badge(run)

    @admin.display(description="took")
    def duration(self, run: CleanupRun) -> str:
        return "running" if run.finished_at is None else duration_in_words(run.finished_at - run.started_at)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "trends": cleanup_trends(), "trend_windows": list(TREND_WINDOWS)}
        return super().changelist_view(request, extra_context)
