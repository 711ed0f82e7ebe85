"""The schedule editor: django-celery-beat's schedules with when they run next, how they last
ran, their missed-run policy, and "run now" through the run ledger."""

import itertools
import json
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery import current_app as celery_app
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.module_loading import import_string
from django_celery_beat.admin import IntervalScheduleAdmin as BeatIntervalScheduleAdmin
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm as BeatPeriodicTaskForm
from django_celery_beat.admin import TaskSelectWidget
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.admin_arguments import TaskArgumentFields, argument_fieldsets, with_argument_fields
from scheduler.admin_crontabs import crontab_unschedulable
from scheduler.admin_runs import health_badge, run_outcome, runs_changelist_url
from scheduler.claim import BEAT_CLAIM
from scheduler.health_reads import knobs_for
from scheduler.messages import argument_problems, message_problems, run_now_refused, task_schedulable
from scheduler.models import SchedulePolicy, ScheduleRun, ScheduleState
from scheduler.publish import BROKER_ERRORS, runs_send_now
from scheduler.sync import schedule_state_is_current
from scheduler.timing import UnschedulableError, first_slot_from, interval_length, interval_too_long, slots_after
from shared.admin_inlines import OneRowInline
from shared.admin_pages import PageCompletingAdmin, newest_of_each
from shared.badges import toned
from shared.claims import holder_name
from shared.declarations import declared_in_apps
from shared.display import duration_in_words, in_zone, moment

UPCOMING_SHOWN = 5
# The add form's "Preview next runs" button (its submit_line.html): checks and shows, saves nothing.
PREVIEW_BUTTON = "_preview"
# Beat checks for due runs about every second, and a busy beat may take a few to claim a batch;
# a shorter deadline would record runs as missed while beat runs normally.
SHORTEST_STARTING_DEADLINE = 5


def schedule_zone(task: PeriodicTask) -> ZoneInfo:
    """The timezone a schedule's times are meant in: a crontab's own, else the site's."""
    if task.crontab_id:
        try:
            return ZoneInfo(str(task.crontab.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            # A name written past the admin (scheduler.crontab_zones): the schedule's problem
            # says so; its times are shown in UTC meanwhile.
            return ZoneInfo("UTC")
    return ZoneInfo(settings.TIME_ZONE)


def schedule_in_words(task: PeriodicTask) -> str:
    if task.crontab_id:
        crontab = task.crontab
        words = crontab.human_readable.removesuffix(f" {crontab.timezone}")
        return f"{words} ({crontab.timezone})"
    if task.clocked_id:
        return f"once, at {in_zone(task.clocked.clocked_time, schedule_zone(task))}"
    for schedule in (task.interval, task.solar):
        if schedule is not None:
            return str(schedule)
    return "no schedule set"


def schedule_state(task: PeriodicTask) -> ScheduleState | None:
    try:
        return task.scheduler_state
    except ScheduleState.DoesNotExist:
        return None


def upcoming_slots(task: PeriodicTask, *, now: datetime, count: int) -> list[datetime]:
    """The next `count` slots as beat would send them; raises UnschedulableError."""
    first = _first_upcoming_slot(task, now)
    if first is None:
        return []
    # The same walk beat makes: one iterator over the slots that follow the first.
    slots = itertools.chain([first], [] if task.one_off else slots_after(task, first))
    before_expiry = itertools.takewhile(lambda slot: not (task.expires and slot >= task.expires), slots)
    return list(itertools.islice(before_expiry, count))


def _first_upcoming_slot(task: PeriodicTask, now: datetime) -> datetime | None:
    state = schedule_state(task)
    # An interval counts from the moment beat started it, which only the stored due time
    # knows; other kinds follow the clock alone. A state older than the last edit is stale.
    if (task.interval_id and state is not None and state.next_due_at is not None
            and state.next_due_at >= now and schedule_state_is_current(task, state)):
        return state.next_due_at
    return first_slot_from(task, now)


def interval_problem(interval: IntervalSchedule) -> str:
    """Why a schedule may not run at `interval`; "" when it may."""
    problem = interval_too_long(every=interval.every, period=interval.period)
    if not problem:
        try:
            interval_length(PeriodicTask(interval=interval))
        except UnschedulableError as error:
            problem = str(error)
    return problem


class IntervalScheduleForm(forms.ModelForm):
    class Meta:
        model = IntervalSchedule
        fields = ["every", "period"]

    def clean(self):
        data = super().clean()
        every, period = data.get("every"), data.get("period")
        if every is not None and period:
            problem = interval_too_long(every=every, period=period)
            if problem:
                label = self.fields["every"].label
                self.add_error("every", f"{label}: {problem}.")
        return data


class IntervalScheduleAdmin(BeatIntervalScheduleAdmin):
    form = IntervalScheduleForm


def upcoming_in_words(task: PeriodicTask) -> str:
    """The next runs of `task` as its page lists them, in its timezone, or why there are none."""
    now, zone = timezone.now(), schedule_zone(task)
    try:
        slots = upcoming_slots(task, now=now, count=UPCOMING_SHOWN)
    except UnschedulableError as error:
        return toned(f"Cannot be scheduled: {error}", "bad")
    if not slots and task.expires and task.expires <= now:
        return f"No further runs: the schedule expired at {in_zone(task.expires, zone)}."
    if not slots:
        return "No further runs."
    times = format_html_join("", "<li>{}{}</li>", (
        (in_zone(slot, zone, weekday=True), " (already due)" if slot < now else "") for slot in slots))
    paused = "Paused: it runs at these times once enabled. " if not task.enabled else ""
    return format_html('<ol class="next-runs" style="margin:0;padding-left:1.5em">{}</ol>{}Times in {}.',
                       times, paused, zone.key)


class JobTaskSelect(TaskSelectWidget):
    """The registered tasks a schedule may run: not Celery's own, not the product's internal ones."""

    def tasks_as_choices(self):
        return tuple(choice for choice in super().tasks_as_choices() if not choice[0] or task_schedulable(choice[0]))


class PeriodicTaskForm(TaskArgumentFields, BeatPeriodicTaskForm):
    """django-celery-beat's form, refusing what no worker could run: an unknown task, arguments
    the task does not take, a crontab that never fires, a message beat could not send.

    The stock form accepts these, and the mistake only shows later as failures in the worker's
    log (or as runs that never come), so it is caught here where the person typing can fix it.

    A task's short form (scheduler.admin_arguments), when filled, writes the kwargs.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["regtask"].widget = JobTaskSelect()
        # The stock form leaves the registered-task box empty on every saved schedule (a seeded
        # one too), with the task in the custom box, where a later pick in the box won silently.
        registered = {value for value, _ in self.fields["regtask"].widget.choices if value}
        if self.instance.task in registered:
            self.initial.update(regtask=self.instance.task, task="")
        self.fill_argument_fields()

    def is_valid(self) -> bool:
        # A preview checks the form and shows the next runs of what was entered, saving nothing.
        return super().is_valid() and PREVIEW_BUTTON not in self.data

    def clean(self):
        custom = self.cleaned_data.get("task")
        data = super().clean()
        task = data.get("task")
        if custom and data.get("regtask") and custom != data["regtask"]:
            self.add_error("task", f"Task (registered) says {data['regtask']} and Task (custom) says {custom}: "
                                   "keep one of them, and empty the other.")
            return data
        if task:
            celery_app.loader.import_default_modules()
            if task not in celery_app.tasks:
                self.add_error("task", (
                    f"There is no task named {task!r}. Pick one from the list of known tasks "
                    "or check the spelling of the dotted path."
                ))
        interval = data.get("interval")
        problem = interval_problem(interval) if interval is not None else ""
        if problem:
            self.add_error("interval", f"{problem[0].upper()}{problem[1:]}.")
        crontab = data.get("crontab")
        never = crontab_unschedulable(crontab) if crontab is not None else None
        if never is not None:
            # A crontab row saved before its own form refused these, or written past it.
            self.add_error("crontab", f"This crontab can never run: {never}. Choose another, or correct it "
                                      "under Crontabs.")
        arguments = self.kwargs_from_argument_fields(data, task)
        # Beat would record every run of such a schedule as not enqueued; say it here instead.
        fields = {field: data.get(field) or "" for field in ("args", "kwargs", "headers", "task", "queue", "exchange",
                                                              "routing_key")}
        problems = message_problems(**fields)
        if task in celery_app.tasks and "task" not in self.errors:
            problems = {**argument_problems(run=celery_app.tasks[task].run, args=fields["args"],
                                            kwargs=fields["kwargs"]), **problems}
        if self.argument_fields_refused(task):
            # Its kwargs are written once the boxes of its short form are right: until then, a
            # check of the kwargs would only say that what those boxes hold is missing.
            problems.pop("kwargs", None)
        check = getattr(celery_app.tasks.get(task), "kwargs_problems", None)
        if arguments is not None and check is not None and "kwargs" in problems:
            said = check(json.loads(fields["kwargs"]))
            if said:
                # Each on the short form's field of the key it names, where it was typed.
                problems["kwargs"] = "; ".join(self.add_argument_problems(arguments, said))
        for field, problem in problems.items():
            if problem and field in self.fields and field not in self.errors:
                self.add_error(field, problem[0].upper() + problem[1:] + ".")
        return data


def _number_errors(label: str, minimum: int) -> dict:
    message = f"{label}: enter a whole number of {minimum} or more."
    return {code: message for code in ("required", "invalid", "min_value")}


class SchedulePolicyForm(forms.ModelForm):
    class Meta:
        model = SchedulePolicy
        fields = ["missed_runs", "catch_up_limit", "starting_deadline_seconds", "overlap", "start_grace_seconds",
                  "max_run_seconds", "failures_to_fail", "successes_to_recover"]
        labels = {"catch_up_limit": "Catch-up limit", "starting_deadline_seconds": "Starting deadline (seconds)",
                  "start_grace_seconds": "Start grace (seconds)"}
        help_texts = {"overlap": "What a run does when it is due while the previous run of this schedule still runs."}
        error_messages = {
            "catch_up_limit": _number_errors("Catch-up limit", 0),
            "starting_deadline_seconds": _number_errors("Starting deadline", SHORTEST_STARTING_DEADLINE),
        }

    def clean_starting_deadline_seconds(self) -> int:
        seconds = self.cleaned_data["starting_deadline_seconds"]
        if seconds < SHORTEST_STARTING_DEADLINE:
            raise forms.ValidationError(
                f"Starting deadline: at least {SHORTEST_STARTING_DEADLINE} seconds. Beat checks for due runs about "
                "once a second and may take a few to send a batch; a shorter deadline records runs as missed "
                "while beat works normally."
            )
        return seconds


class SchedulePolicyInline(OneRowInline):
    """The schedule's missed-run and overlap policy; without a row the defaults shown apply."""

    model = SchedulePolicy
    form = SchedulePolicyForm
    verbose_name = verbose_name_plural = "missed and overlapping runs, and health"
    fieldsets = [
        (None, {"fields": ["missed_runs", "catch_up_limit", "starting_deadline_seconds", "overlap"]}),
        ("Health (empty: derived from the schedule's period)",
         {"fields": ["start_grace_seconds", "max_run_seconds", "failures_to_fail", "successes_to_recover"]}),
    ]


# A one-per-schedule row of another app shown on the schedule's page (monitoring's alert
# settings): named by the apps in their declarations (SCHEDULE_INLINES), so this app imports none.
def declared_inlines() -> list:
    return [import_string(path) for path in declared_in_apps("SCHEDULE_INLINES")]


class PeriodicTaskAdmin(PageCompletingAdmin, BeatPeriodicTaskAdmin):
    form = PeriodicTaskForm
    inlines = [SchedulePolicyInline]
    list_display = ["name", "enabled", "health_state", "timing", "next_due", "last_run"]
    list_filter = ["enabled", "one_off", "task"]
    # The stock date bar over start_time, which most schedules leave empty.
    date_hierarchy = None
    ordering = ["name"]
    actions = ["enable_tasks", "disable_tasks", "toggle_tasks", "run_now"]
    # last_run_at is left out: our beat records runs in the ledger, not on the schedule row.
    fieldsets = [
        (None, {"fields": ["name", "regtask", "task", "enabled", "description", "health_now"]}),
        ("Schedule", {"fields": ["interval", "crontab", "solar", "clocked", "start_time", "one_off",
                                 "in_words", "next_runs", "runs"]}),
        ("Arguments", {"fields": ["args", "kwargs"], "classes": ["collapse"]}),
        ("Execution options", {"fields": ["expires", "expire_seconds", "queue", "exchange", "routing_key",
                                          "priority", "headers"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["in_words", "next_runs", "runs", "health_now"]

    class Media:
        # Shows the chosen task's short form of arguments only; without it, all are shown.
        js = ["scheduler/task_arguments.js"]

    def __init__(self, model, admin_site) -> None:
        super().__init__(model, admin_site)
        # The short forms of arguments the task apps declare, as fields of the schedule form.
        self.form = with_argument_fields(self.form)

    def get_inlines(self, request, obj):
        return [*self.inlines, *declared_inlines()]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("scheduler_state", "health")

    def get_fieldsets(self, request, obj=None):
        first, *rest = self.fieldsets
        # A viewer reads the kwargs as saved; the short forms are for writing them.
        writes = obj is None or self.has_change_permission(request, obj)
        fieldsets = [first, *(argument_fieldsets(self.form.argument_forms) if writes else []), *rest]
        if obj is not None:
            return fieldsets
        # A schedule being added has no past runs or health yet; its next runs are previewed from
        # what was entered (PREVIEW_BUTTON).
        unsaved = {"runs", "health_now"}
        return [(title, {**options, "fields": [field for field in options["fields"] if field not in unsaved]})
                for title, options in fieldsets]

    def page_complete(self, rows: list[PeriodicTask]) -> None:
        # Per schedule, its newest run by slot: one probe of the (schedule, slot) unique index.
        runs = newest_of_each(ScheduleRun.objects.all(), link="schedule", newest_first=("-scheduled_for",),
                              parents=PeriodicTask.objects.filter(pk__in=[task.pk for task in rows]))
        for task in rows:
            task.last_run = runs.get(task.pk)

    # Not named "health": Django would read the schedule's reverse one-to-one of that name instead.
    @admin.display(description="health", ordering="health__state")
    def health_state(self, task: PeriodicTask) -> str:
        return health_badge(getattr(task, "health", None), enabled=task.enabled)

    @admin.display(description="health")
    def health_now(self, task: PeriodicTask) -> str:
        knobs = knobs_for([task.pk])[task.pk]
        settings_now = (f"Late after {duration_in_words(knobs.start_grace)} past a slot, down after twice that; "
                        f"down when running over {duration_in_words(knobs.max_run)}; failing after "
                        f"{knobs.failures_to_fail} failure(s) in a row; back up after {knobs.successes_to_recover} "
                        "success(es) (its policy below, or defaults from its period).")
        health = getattr(task, "health", None)
        if health is None:
            return format_html("not evaluated yet: the evaluator (manage.py evaluate) judges every schedule every "
                               "few seconds.<br>{}", settings_now)
        return format_html("{} since {}: {}<br>{}", health_badge(health, enabled=task.enabled), moment(health.since),
                           health.why or "as expected", settings_now)

    @admin.display(description="schedule")
    def timing(self, task: PeriodicTask) -> str:
        return schedule_in_words(task)

    @admin.display(description="next due")
    def next_due(self, task: PeriodicTask) -> str:
        state = schedule_state(task)
        if not task.enabled:
            return "paused"
        if state is None:
            return "not planned yet: beat has not read this schedule"
        if state.problem:
            return toned(state.problem, "bad")
        if state.next_due_at is None:
            return "no further runs"
        zone = schedule_zone(task)
        overdue = " (overdue)" if state.next_due_at < timezone.now() else ""
        return format_html('<span title="{}">{}{}</span>', zone.key, in_zone(state.next_due_at, zone), overdue)

    @admin.display(description="last run")
    def last_run(self, task: PeriodicTask) -> str:
        run = task.last_run
        if run is None:
            return "never"
        url = reverse("admin:scheduler_schedulerun_change", args=[run.pk])
        return format_html('<a href="{}" title="run for {}">{}</a>', url, moment(run.scheduled_for), run_outcome(run))

    @admin.display(description="in words")
    def in_words(self, task: PeriodicTask) -> str:
        return schedule_in_words(task)

    @admin.display(description="next runs")
    def next_runs(self, task: PeriodicTask) -> str:
        if task.pk is not None:
            return upcoming_in_words(task)
        # A schedule being added: its timing as entered so far (after a preview or a refusal).
        if not any((task.interval_id, task.crontab_id, task.solar_id, task.clocked_id)):
            return "Choose a schedule and press Preview next runs to see when it runs, before saving."
        return format_html("Not saved yet. {}", upcoming_in_words(task))

    @admin.display(description="runs")
    def runs(self, task: PeriodicTask) -> str:
        link = format_html('<a href="{}">All runs of this schedule in the run ledger</a>',
                           runs_changelist_url(schedule=task.pk))
        last = task.runs.order_by("-scheduled_for").first()
        if last is None:
            return format_html("Not run yet. {}", link)
        return format_html("Last run, for {}: {}<br>{}", in_zone(last.scheduled_for, schedule_zone(task)),
                           run_outcome(last), link)

    # django-celery-beat's actions declare no permission, so view-only staff could use them.
    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, queryset)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected schedules", permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected schedules now", permissions=["change"])
    def run_now(self, request, queryset) -> None:
        tasks = list(queryset.order_by("name"))
        celery_app.loader.import_default_modules()
        unknown = [task.name for task in tasks if task.task not in celery_app.tasks]
        if unknown:
            messages.error(request, f"Nothing was run: no worker knows the task of {', '.join(unknown)}.")
            return
        refused = [f"{task.name!r}: {reason}" for task in tasks if (reason := run_now_refused(task, request.user))]
        if refused:
            messages.error(request, "Nothing was run. " + " ".join(refused))
            return
        names = ", ".join(task.name for task in tasks)
        ledger = runs_changelist_url(kind=ScheduleRun.Kind.MANUAL)
        try:
            # Claimed in the ledger first, like beat's runs: the worker records the outcome on the row.
            runs_send_now(tasks=tasks, node=holder_name(f"admin:{request.user.get_username()}"), app=celery_app)
        except BROKER_ERRORS as error:
            messages.warning(request, format_html(
                "Could not reach the broker at {} ({}). The runs of {} are recorded as claimed in the "
                '<a href="{}">run ledger</a>: beat sends them once it reaches Redis again (it takes over claims '
                "older than {} s), or records them as not enqueued if their starting deadline passes first.",
                celery_app.connection_for_write().as_uri(), error, names, ledger,
                int(BEAT_CLAIM.lasts.total_seconds()),
            ))
            return
        messages.success(request, format_html('Queued for the workers now: {}. Follow the runs in the <a href="{}">run '
                                              "ledger</a>.", names, ledger))
