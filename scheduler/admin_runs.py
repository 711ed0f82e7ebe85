"""The run ledger in the admin: every run of every schedule, for review, fast at a million rows."""

import json
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django_celery_results.models import TaskResult

from scheduler.admin_filters import RunScheduleFilter, schedule_name_matches
from scheduler.health import State
from scheduler.health_reads import start_graces
from scheduler.models import ScheduleHealth, ScheduleRun
from shared.admin_pages import CappedCountPaginator, PageCompletingAdmin
from shared.admin_review import ReviewOnlyAdmin
from shared.badges import badge
from shared.display import duration_in_words, moment

# A run's status by tone; claimed, sent and skipped are quiet: nothing went wrong, nothing ran (yet).
STATUS_TONES = {
    ScheduleRun.Status.SUCCEEDED: "good",
    ScheduleRun.Status.FAILED: "bad",
    ScheduleRun.Status.NOT_ENQUEUED: "bad",
    ScheduleRun.Status.MISSED: "warning",
    ScheduleRun.Status.RUNNING: "busy",
}


def run_status_badge(run: ScheduleRun) -> str:
    return badge(run.get_status_display(), STATUS_TONES.get(run.status, "quiet"), status=f"run-{run.status}")


def run_outcome(run: ScheduleRun) -> str:
    """The status badge, and how long the run took once it has finished."""
    if run.duration is None:
        return run_status_badge(run)
    return format_html("{} {}", run_status_badge(run), duration_in_words(run.duration))


# A schedule's health by tone: down and failing alert, late and unknown warn.
HEALTH_TONES = {State.UP: "good", State.DOWN: "bad", State.FAILING: "bad", State.LATE: "warning",
                State.UNKNOWN: "warning", State.NEW: "quiet", State.PAUSED: "quiet"}


def health_badge(health: ScheduleHealth | None, *, enabled: bool = True) -> str:
    """The schedule's health pill, its reason as the tooltip."""
    if health is None:
        state = State.PAUSED if not enabled else State.NEW
        return badge(state, HEALTH_TONES[state], status=f"health-{state}")
    pill = badge(health.state, HEALTH_TONES.get(health.state, "quiet"), status=f"health-{health.state}")
    return format_html('<span title="{}">{}</span>', health.why, pill)


def lateness(run: ScheduleRun, grace: timedelta | None) -> str:
    """" late" when the run started (or still waits) past its schedule's start grace."""
    if grace is None or run.kind == ScheduleRun.Kind.MANUAL:
        return ""
    waiting = run.status in (ScheduleRun.Status.CLAIMED, ScheduleRun.Status.SENT)
    began = run.started_at or (timezone.now() if waiting else None)
    if began is None or began - run.scheduled_for <= grace:
        return ""
    words = "waiting" if run.started_at is None else "started"
    return format_html(" {}", badge(f"late: {words} {duration_in_words(began - run.scheduled_for)} after its slot",
                                    "warning", status="run-late"))


def runs_changelist_url(**filters) -> str:
    return f"{reverse('admin:scheduler_schedulerun_changelist')}?{urlencode(filters)}"


def run_time(field: str, description: str):
    """A run's time with seconds and zone, where Django's default format drops the seconds."""

    @admin.display(description=description)
    def show(admin_view, run: ScheduleRun) -> str:
        return moment(getattr(run, field), zone=True) or admin_view.get_empty_value_display()

    return show


class ScheduleRunAdmin(PageCompletingAdmin, ReviewOnlyAdmin):
    """What ran, when it was due and started, how long it took, what it produced or why not.

    The ledger grows by a row per slot of every schedule, so the list never counts the whole
    table (no full count, no facet counts, no date hierarchy) and sorts only by the indexed
    scheduled time. Each filter follows an index: the schedule's (schedule, slot), the status's
    (status, slot), the kind's partial index of the runs that are not scheduled ones (migration
    0006). The schedule filter and the search find schedules by name in the schedules table.
    """

    list_display = ["scheduled", "schedule_name", "status_and_kind", "short_reason", "started_took", "worker",
                    "result"]
    list_filter = [RunScheduleFilter, "status", "kind"]
    search_fields = ["schedule_name"]
    search_help_text = "Part of a schedule's name."
    sortable_by = ["scheduled"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    # "Select all" would act on a capped count; old runs are removed by the retention engine.
    actions = None
    fieldsets = [
        (None, {"fields": ["schedule", "schedule_name", "task_name", "kind", "status_badge", "reason",
                           "scheduled_time"]}),
        ("Timing", {"fields": ["claimed_by", "claimed_time", "sent_time", "started_time", "finished_time", "took",
                               "worker", "lease_until_time"]}),
        ("Result", {"fields": ["task_id", "result", "error_traceback", "output_json"]}),
    ]
    readonly_fields = ["status_badge", "scheduled_time", "claimed_time", "sent_time", "started_time", "finished_time",
                       "took", "lease_until_time", "result", "error_traceback", "output_json"]

    scheduled_time = run_time("scheduled_for", "scheduled for")
    claimed_time = run_time("claimed_at", "claimed at")
    sent_time = run_time("sent_at", "sent at")
    started_time = run_time("started_at", "started at")
    finished_time = run_time("finished_at", "finished at")
    lease_until_time = run_time("lease_until", "lease until")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(schedule_name_matches(term, id_field="schedule_id", name_field="schedule_name")), False

    def page_complete(self, rows: list[ScheduleRun]) -> None:
        results = TaskResult.objects.filter(task_id__in=[run.task_id for run in rows]).order_by()
        found = dict(results.values_list("task_id", "pk"))
        graces = start_graces(run.schedule_id for run in rows if run.schedule_id)
        for run in rows:
            run.task_result_pk = found.get(run.task_id)
            run.start_grace = graces.get(run.schedule_id)

    @admin.display(description="scheduled for", ordering="scheduled_for")
    def scheduled(self, run: ScheduleRun) -> str:
        return moment(run.scheduled_for)

    @admin.display(description="status")
    def status_badge(self, run: ScheduleRun) -> str:
        return run_status_badge(run)

    @admin.display(description="status")
    def status_and_kind(self, run: ScheduleRun) -> str:
        # Nearly every run is a scheduled one; only the others say what they were.
        kind = "" if run.kind == ScheduleRun.Kind.SCHEDULED else f" {run.get_kind_display().lower()}"
        return format_html("{}{}{}", run_status_badge(run), kind, lateness(run, getattr(run, "start_grace", None)))

    @admin.display(description="reason")
    def short_reason(self, run: ScheduleRun) -> str:
        if not run.reason:
            return self.get_empty_value_display()
        return format_html('<span title="{}">{}</span>', run.reason, Truncator(run.reason).chars(40))

    @admin.display(description="started, took")
    def started_took(self, run: ScheduleRun) -> str:
        started = moment(run.started_at, same_day_as=run.scheduled_for)
        if started is None:
            return self.get_empty_value_display()
        return f"{started}, {self.took(run)}"

    @admin.display(description="took")
    def took(self, run: ScheduleRun) -> str:
        if run.duration is not None:
            return duration_in_words(run.duration)
        return "running" if run.status == ScheduleRun.Status.RUNNING else self.get_empty_value_display()

    @admin.display(description="result")
    def result(self, run: ScheduleRun) -> str:
        if not hasattr(run, "task_result_pk"):  # the detail page: one run, one query
            run.task_result_pk = TaskResult.objects.filter(task_id=run.task_id).values_list("pk", flat=True).first()
        if run.task_result_pk is None:
            return self.get_empty_value_display()
        url = reverse("admin:django_celery_results_taskresult_change", args=[run.task_result_pk])
        return format_html('<a href="{}" title="the task result of this run">view</a>', url)

    @admin.display(description="error")
    def error_traceback(self, run: ScheduleRun) -> str:
        if not run.error:
            return self.get_empty_value_display()
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', run.error)

    @admin.display(description="output")
    def output_json(self, run: ScheduleRun) -> str:
        if run.output is None:
            return self.get_empty_value_display()
        text = json.dumps(run.output, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', text)
