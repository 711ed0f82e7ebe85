"""What one health pass reads, in a few queries for every schedule at once: each schedule with
its policy, state and last recorded health, its newest runs, and whether beat and any worker
are alive."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connection
from django.db.models import F, Max, Window
from django.db.models.functions import Right, RowNumber
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from scheduler.health import Knobs, Seen, knobs_of
from scheduler.models import BeatHeartbeat, ScheduleHealth, SchedulePolicy, ScheduleRun, ScheduleState, WorkerHeartbeat
from scheduler.policy import policy_of
from scheduler.timing import UnschedulableError, first_slot_after, interval_length

# The newest runs each schedule is judged by: enough for any failure or recovery streak a
# policy may ask for up to this many, read within a window that keeps the query on recent rows.
RUNS_READ = 6
RECENT = timedelta(days=40)


@dataclass(frozen=True)
class Liveness:
    beat_alive: bool
    workers_alive: bool
    beats: int
    workers: int
    # The newest heartbeat of each: a run due after it may be waiting for a process that has
    # just stopped, which its staleness will only tell later.
    last_beat_at: datetime | None = None
    last_worker_at: datetime | None = None


def liveness(*, now: datetime) -> Liveness:
    beats = BeatHeartbeat.fresh(now=now).count()
    workers = WorkerHeartbeat.fresh(now=now).count()
    return Liveness(beats > 0, workers > 0, beats, workers,
                    last_beat_at=BeatHeartbeat.objects.aggregate(at=Max("last_beat_at"))["at"],
                    last_worker_at=WorkerHeartbeat.objects.aggregate(at=Max("last_beat_at"))["at"])


@dataclass(frozen=True)
class TaskSeen:
    """What a pass needs of a schedule itself."""

    id: int
    name: str
    enabled: bool


class HealthSeen(NamedTuple):
    """A schedule's last recorded health (ScheduleHealth's columns of these names): what a pass
    compares the new one with."""

    state: str
    cause: str
    why: str
    slot: datetime | None
    run_id: int | None
    alerted_at: datetime | None


class PolicySeen(NamedTuple):
    """A schedule's own health settings (SchedulePolicy's columns of these names; None: the
    default from its period), as knobs_of reads them."""

    start_grace_seconds: int | None = None
    max_run_seconds: int | None = None
    failures_to_fail: int | None = None
    successes_to_recover: int | None = None


@dataclass
class Watched:
    task: TaskSeen
    seen: Seen
    knobs: Knobs
    health: HealthSeen | None


def schedules_watched(*, now: datetime) -> list[Watched]:
    """Every schedule as a pass judges it, read table by table as plain values: at 10,000
    schedules, model instances of each schedule and its six relations took most of a second
    (and the 20,000 policy and health instances alone a third of a pass)."""
    tasks = list(PeriodicTask.objects.values_list("id", "name", "enabled", "interval_id", "crontab_id", "solar_id"))
    states = {task_id: (next_due, problem) for task_id, next_due, problem
              in ScheduleState.objects.values_list("task_id", "next_due_at", "problem")}
    policies = {task_id: PolicySeen(*knobs) for task_id, *knobs
                in SchedulePolicy.objects.values_list("task_id", *PolicySeen._fields)}
    healths = {task_id: HealthSeen(*health) for task_id, *health
               in ScheduleHealth.objects.values_list("task_id", *HealthSeen._fields)}
    runs = _newest_runs([task[0] for task in tasks], now=now)
    periods = _Periods([task[3:] for task in tasks])
    # Thousands of schedules share a policy (most have none) and a period: one Knobs for each pair.
    knobs_by: dict[tuple, Knobs] = {}
    watched = []
    for task_id, name, enabled, interval_id, crontab_id, solar_id in tasks:
        next_due, problem = states.get(task_id, (None, ""))
        seen = Seen(enabled=enabled, next_due_at=next_due, problem=problem, runs=runs.get(task_id, []))
        key = (policies.get(task_id, NO_POLICY), periods.of((interval_id, crontab_id, solar_id), next_due))
        knobs = knobs_by.get(key) or knobs_by.setdefault(key, knobs_of(*key))
        watched.append(Watched(TaskSeen(task_id, name, enabled), seen, knobs, healths.get(task_id)))
    return watched


NO_POLICY = PolicySeen()


class _Periods:
    """How far apart each timing's slots are, computed once per distinct interval, crontab or
    solar row (thousands of schedules share a few)."""

    def __init__(self, timings: list[tuple]) -> None:
        """`timings`: the (interval_id, crontab_id, solar_id) of each schedule."""
        self.intervals = IntervalSchedule.objects.in_bulk({interval for interval, _, _ in timings if interval})
        self.crontabs = CrontabSchedule.objects.in_bulk({crontab for _, crontab, _ in timings if crontab})
        self.solars = SolarSchedule.objects.in_bulk({solar for _, _, solar in timings if solar})
        self.known: dict[tuple, timedelta | None] = {}

    def of(self, key: tuple, next_due: datetime | None) -> timedelta | None:
        if key not in self.known:
            interval_id, crontab_id, solar_id = key
            task = PeriodicTask(interval=self.intervals.get(interval_id), crontab=self.crontabs.get(crontab_id),
                                solar=self.solars.get(solar_id))
            self.known[key] = _period(task, next_due)
        return self.known[key]


class RunSeen(NamedTuple):
    """The columns of a run that its schedule's health is judged by (scheduler.health reads a
    ScheduleRun's attributes of the same names), read without building model instances: a
    tuple, since 60,000 of them are made every pass (a frozen dataclass cost half a second).
    On PostgreSQL a text is read only for the status that uses it, "" otherwise."""

    id: int
    status: str
    scheduled_for: datetime
    started_at: datetime | None
    worker: str
    claimed_by: str
    error: str
    reason: str

    def get_status_display(self) -> str:
        return ScheduleRun.Status(self.status).label


# The end of an error or reason is enough (its last line is what is shown); a traceback in full
# for each of 60,000 runs would be most of a pass.
TEXT_TAIL = 500
# Each text only for the status whose health reads it (the error of a failed run, the reason of a
# missed one, the worker of a running one, the holder of a claimed one): most runs succeeded, and
# 60,000 rows of four texts each were a third of the read.
LATERAL_NEWEST = f"""
    SELECT r.schedule_id, r.id, r.status, EXTRACT(EPOCH FROM r.scheduled_for)::float8,
           EXTRACT(EPOCH FROM r.started_at)::float8,
           CASE WHEN r.status = 'running' THEN r.worker END,
           CASE WHEN r.status = 'claimed' THEN r.claimed_by END,
           CASE WHEN r.status = 'failed' THEN RIGHT(r.error, {TEXT_TAIL}) END,
           CASE WHEN r.status IN ('missed', 'not_enqueued') THEN RIGHT(r.reason, {TEXT_TAIL}) END
    FROM django_celery_beat_periodictask t
    CROSS JOIN LATERAL (
        SELECT * FROM scheduler_schedulerun r
        WHERE r.schedule_id = t.id AND r.scheduled_for <= %(now)s AND r.scheduled_for >= %(since)s
          AND r.kind IN ('scheduled', 'catch_up') AND r.status <> 'skipped'
        ORDER BY r.scheduled_for DESC LIMIT {RUNS_READ}
    ) r
    ORDER BY r.schedule_id, r.scheduled_for DESC
"""


def _newest_runs(task_ids: list[int], *, now: datetime) -> dict[int, list[RunSeen]]:
    """Each schedule's RUNS_READ newest scheduled and catch-up runs that are due, newest first.

    On PostgreSQL one LATERAL query walks each schedule's (schedule, slot) index backwards and
    stops after RUNS_READ rows (a window over every recent run sorted 40 days of the ledger, 2 s at
    a million runs); elsewhere (SQLite) a window function does it. Runs beat claimed ahead of
    their slot are not due yet: they would push the due ones out.
    """
    runs: dict[int, list[RunSeen]] = {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(LATERAL_NEWEST, {"now": now, "since": now - RECENT})
            # fetchall: iterating the cursor checked the result once per row, a tenth of the read.
            rows = cursor.fetchall()
        for schedule_id, run_id, status, slot, started, worker, claimed_by, error, reason in rows:
            runs.setdefault(schedule_id, []).append(RunSeen(
                run_id, status, _utc(slot), _utc(started), worker or "", claimed_by or "", error or "", reason or ""))
        return runs
    newest = (ScheduleRun.objects.filter(schedule_id__in=task_ids, scheduled_for__gte=now - RECENT,
                                         scheduled_for__lte=now,
                                         kind__in=[ScheduleRun.Kind.SCHEDULED, ScheduleRun.Kind.CATCH_UP])
              .exclude(status=ScheduleRun.Status.SKIPPED)
              .annotate(place=Window(RowNumber(), partition_by=[F("schedule_id")],
                                     order_by=[F("scheduled_for").desc()]))
              .filter(place__lte=RUNS_READ)
              .order_by("schedule_id", "place")
              .values_list("schedule_id", "id", "status", "scheduled_for", "started_at", "worker", "claimed_by",
                           Right("error", TEXT_TAIL), Right("reason", TEXT_TAIL)))
    for schedule_id, *columns in newest:
        runs.setdefault(schedule_id, []).append(RunSeen(*columns))
    return runs


def _utc(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _period(task: PeriodicTask, next_due: datetime | None) -> timedelta | None:
    """How far apart its slots are (near its next one): the scale of its defaults."""
    try:
        if task.interval_id:
            return interval_length(task)
        if (task.crontab_id or task.solar_id) and next_due is not None:
            following = first_slot_after(task, next_due)
            return following - next_due if following else None
    except UnschedulableError:
        pass
    return None


def knobs_for(task_ids) -> dict[int, Knobs]:
    """Each schedule's health settings as they apply: its own, or the defaults from its period
    (one query: for the admin's pages, a page of schedules at a time)."""
    tasks = PeriodicTask.objects.filter(pk__in=set(task_ids)).select_related(
        "scheduler_policy", "scheduler_state", "interval", "crontab", "clocked", "solar")
    periods: dict[tuple, timedelta | None] = {}
    knobs = {}
    for task in tasks:
        state = getattr(task, "scheduler_state", None)
        key = (task.interval_id, task.crontab_id, task.solar_id)
        if key not in periods:
            periods[key] = _period(task, state.next_due_at if state else None)
        knobs[task.pk] = knobs_of(policy_of(task), periods[key])
    return knobs


def start_graces(task_ids) -> dict[int, timedelta]:
    """Each schedule's start grace: past it a run is late."""
    return {task_id: knobs.start_grace for task_id, knobs in knobs_for(task_ids).items()}
