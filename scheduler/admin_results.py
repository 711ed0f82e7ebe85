"""The task results in the admin, fast at a million rows: which schedule, which state, which day.

Stock django-celery-results' admin counts every result twice, reads four whole-table DISTINCTs
for its sidebar filters and a DISTINCT DATE_TRUNC for its date bar, searches five columns with
'%...%' that no index serves, and pages by OFFSET. Here the list pages by keyset on date_done
(shared.admin_pages.KeysetChangeList: no count, the oldest page as cheap as the newest); every
filter's choices come from somewhere small (the schedules, Celery's states, the calendar, the
workers' heartbeats); the search is an indexed match on the task id, task or schedule, with the
substring search over the text columns opted into (trigram indexes on PostgreSQL, migration
scheduler 0006).
"""

from datetime import datetime, time, timedelta

from celery import states
from django.contrib import admin
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django_celery_beat.models import PeriodicTask
from django_celery_results.admin import TaskResultAdmin as ResultsTaskResultAdmin
from django_celery_results.models import TaskResult

from scheduler.admin_filters import ResultScheduleFilter, schedule_name_matches
from scheduler.models import WorkerHeartbeat
from shared.admin_pages import KeysetPagedAdmin
from shared.admin_review import ReviewOnlyAdmin

SUBSTRING_SEARCH = "contains"
# Celery's states, the ones a reviewer looks for first.
STATES = [states.SUCCESS, states.FAILURE, states.STARTED, states.RETRY, states.REVOKED, states.PENDING,
          states.RECEIVED, states.REJECTED, states.IGNORED]
DAYS_BY_DATE = 7


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(state, state.lower()) for state in STATES]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(status=self.value())


def day_bounds(value: str, *, today) -> tuple[datetime, datetime] | None:
    """[start, end) in the site's zone of "today", "yesterday", "7d", "30d" or a date (2031-03-04)."""
    spans = {"today": (today, 1), "yesterday": (today - timedelta(days=1), 1),
             "7d": (today - timedelta(days=6), 7), "30d": (today - timedelta(days=29), 30)}
    if value in spans:
        first, days = spans[value]
    else:
        try:
            first, days = datetime.strptime(value, "%Y-%m-%d").date(), 1
        except ValueError:
            return None
    zone = timezone.get_current_timezone()
    start = datetime.combine(first, time.min, tzinfo=zone)
    return start, datetime.combine(first + timedelta(days=days), time.min, tzinfo=zone)


class DayFilter(admin.SimpleListFilter):
    """The day a result was done, from the calendar: the date bar it replaces read every row
    (DISTINCT DATE_TRUNC over the table) to offer its choices. Any date works as ?day=YYYY-MM-DD."""

    title = "day done"
    parameter_name = "day"

    def lookups(self, request, model_admin):
        today = timezone.localdate()
        by_date = [(f"{day:%Y-%m-%d}", date_format(day, "D j N")) for day in
                   (today - timedelta(days=back) for back in range(2, DAYS_BY_DATE))]
        return [("today", "Today"), ("yesterday", "Yesterday"), *by_date, ("7d", "Past 7 days"),
                ("30d", "Past 30 days")]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        bounds = day_bounds(self.value(), today=timezone.localdate())
        if bounds is None:
            return queryset.none()
        return queryset.filter(date_done__gte=bounds[0], date_done__lt=bounds[1])


class TaskFilter(admin.SimpleListFilter):
    """The tasks the schedules run: read from the schedules, not a DISTINCT over every result."""

    title = "task"
    parameter_name = "task"

    def lookups(self, request, model_admin):
        tasks = PeriodicTask.objects.order_by("task").values_list("task", flat=True).distinct()
        return [(task, task) for task in tasks]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(task_name=self.value())


class WorkerFilter(admin.SimpleListFilter):
    """The workers that recorded themselves (their heartbeats), not a DISTINCT over every result."""

    title = "worker"
    parameter_name = "worker"

    def lookups(self, request, model_admin):
        return [(worker, worker) for worker in WorkerHeartbeat.objects.order_by("worker").values_list("worker",
                                                                                                      flat=True)]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(worker=self.value())


class TaskResultAdmin(KeysetPagedAdmin, ReviewOnlyAdmin, ResultsTaskResultAdmin):
    """django-celery-results' page, narrowed to what a person reviews, read-only, and fast.

    The stock list leads with the 36-character task id, which wraps and pushes the state and
    worker off screen; results are written by workers, never added or edited by hand.
    """

    list_display = ["periodic_task_name", "task_name", "status", "worker", "date_started", "date_done", "short_id"]
    list_display_links = ["periodic_task_name", "task_name"]
    list_filter = [ResultScheduleFilter, StateFilter, DayFilter, TaskFilter, WorkerFilter]
    keyset_field = "date_done"
    list_options = (SUBSTRING_SEARCH,)
    # "Select all" would act on rows no one counted; old results go by the retention engine.
    actions = None
    search_fields = ["task_id"]
    search_help_text = ("A task id (or its first characters), a task's name or part of a schedule's name. Tick "
                        "the box to find the text anywhere in the task, schedule, worker and arguments.")
    substring_search_fields = ["task_name", "periodic_task_name", "worker", "task_args", "task_kwargs"]
    substring_search_label = "anywhere in the text"

    @admin.display(description="task id")
    def short_id(self, result: TaskResult) -> str:
        return result.task_id[:8]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if request.GET.get(SUBSTRING_SEARCH):
            anywhere = Q()
            for field in self.substring_search_fields:
                anywhere |= Q(**{f"{field}__icontains": term})
            return queryset.filter(anywhere), False
        # Each part is one index: task_id's (its LIKE 'prefix%' index on PostgreSQL), task_name's,
        # periodic_task_name's.
        indexed = Q(task_id__startswith=term) | Q(task_name=term)
        return queryset.filter(indexed | schedule_name_matches(term, id_field=None,
                                                               name_field="periodic_task_name")), False
