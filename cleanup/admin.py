from django.contrib import admin
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime

from cleanup.models import CleanupRun, RetentionPolicy
from cleanup.selectors import TREND_WINDOWS, cleanup_trends
from cleanup.targets import retention_targets
from scheduler.admin_review import ReviewOnlyAdmin


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
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

    @admin.display(description="last run")
    def last_run(self, policy: RetentionPolicy) -> str:
        run = CleanupRun.objects.filter(target=policy.target, dry_run=False).first()
        if run is None:
            return "never"
        return format_html("{}: {} deleted, {}", run.get_status_display(), run.rows_deleted,
                           date_format(localtime(run.started_at), "Y-m-d H:i"))


@admin.register(CleanupRun)
class CleanupRunAdmin(ReviewOnlyAdmin):
    list_display = ["started_at", "target", "status", "trigger", "kind", "rows_matched", "rows_deleted",
                    "batches", "duration", "error"]
    list_filter = ["target", "status", "trigger", "dry_run"]
    date_hierarchy = "started_at"
    change_list_template = "admin/cleanup/cleanuprun/change_list.html"

    @admin.display(description="kind")
    def kind(self, run: CleanupRun) -> str:
        # Words, not the boolean icon: a red cross beside a real run read as a failure.
        return "dry run" if run.dry_run else "delete"

    @admin.display(description="seconds")
    def duration(self, run: CleanupRun) -> str:
        return "running" if run.duration_seconds is None else f"{run.duration_seconds:.1f}"

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "trends": cleanup_trends(), "trend_windows": list(TREND_WINDOWS)}
        return super().changelist_view(request, extra_context)
