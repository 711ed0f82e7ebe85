"""What the monitoring dashboard reads: the run ledger aggregated in the database over one window
of whole hours, and the workers' heartbeats with their running runs (the queue lengths in Redis
come from monitoring.collector, as /metrics reads them).

Every ledger query is bounded by the window on `scheduled_for` (the ledger's `scheduler_run_newest`
index) and returns one row per hour, or per schedule for the slowest few; only on SQLite, which has
no percentile function, are two numbers per run read (see `lag_and_wait_per_hour`). Hours are cut
in UTC, in SQL, so a day with a DST change still has 24 of them.
"""

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Count

from monitoring.models import LedgerHour
from scheduler.models import ScheduleHealth, ScheduleRun, WorkerHeartbeat

TABLE = ScheduleRun._meta.db_table
PERCENTILES = (50, 95)
# On SQLite, lag and wait are ranked in Python over at most about this many runs (a random sample
# above it); PostgreSQL ranks every run of the window in the query.
SAMPLE_ABOVE = 100_000
SLOWEST_SHOWN = 10
# The running runs read at most: a page, not the ledger, even if thousands hang.
RUNNING_READ = 500


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    hours: int


WINDOWS = (Window("24h", "Last 24 hours", 24), Window("7d", "Last 7 days", 7 * 24))


def window_of(key: str | None) -> Window:
    return next((window for window in WINDOWS if window.key == key), WINDOWS[0])


@dataclass(frozen=True)
class Hours:
    """The whole hours (UTC) a window covers, the current one last, as hours since the epoch."""

    first: int
    count: int

    @classmethod
    def ending_at(cls, now: datetime, *, count: int) -> "Hours":
        return cls(int(now.timestamp()) // 3600 - count + 1, count)

    @property
    def numbers(self) -> range:
        return range(self.first, self.first + self.count)

    @property
    def start(self) -> datetime:
        return hour_start(self.first)

    @property
    def end(self) -> datetime:
        # The end of the current hour: beat may claim a slot a little ahead of its time.
        return hour_start(self.first + self.count)

    def sql_params(self) -> list:
        return [connection.ops.adapt_datetimefield_value(moment) for moment in (self.start, self.end)]


def hour_start(number: int) -> datetime:
    return datetime.fromtimestamp(number * 3600, UTC)


# --- SQL that differs between the two databases the project runs on ---------------------------

def _hour_of(column: str) -> str:
    """The UTC hour of `column`: a timestamp on PostgreSQL, 'YYYY-MM-DD HH' text on SQLite."""
    if connection.vendor == "postgresql":
        # date_trunc measured three times faster than floor(extract(epoch ...)), which is numeric.
        return f"date_trunc('hour', {column} AT TIME ZONE 'UTC')"
    # Django keeps SQLite's datetimes as UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff' (no database
    # TIME_ZONE is set): the first 13 characters are the hour, cut far faster than strftime parses.
    return f"substr({column}, 1, 13)"


def _hour_number(key: datetime | str) -> int:
    """Hours since the epoch, from what `_hour_of` gave."""
    at = datetime.fromisoformat(f"{key}:00") if isinstance(key, str) else key
    return int(at.replace(tzinfo=UTC).timestamp()) // 3600


def _duration(start: str, end: str) -> str:
    """From `start` to `end`: an interval on PostgreSQL (aggregated as one, then read by `_seconds`),
    seconds on SQLite."""
    if connection.vendor == "postgresql":
        return f"({end} - {start})"
    # julianday is a double of days: about 50 µs of noise at today's dates, gone at milliseconds.
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


def _seconds(duration: str) -> str:
    """A duration from `_duration`, or an aggregate of them, in seconds. On PostgreSQL only once per
    aggregate: extracting seconds from every row's interval measured twice as slow."""
    if connection.vendor == "postgresql":
        return f"extract(epoch FROM {duration})::float8"
    return duration


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- The ledger -------------------------------------------------------------------------------

def runs_per_hour(*, hours: Hours) -> dict[int, dict[str, int]]:
    """Per hour of the slot a run was for: its runs counted by status."""
    rows = _rows(f"SELECT {_hour_of('scheduled_for')} AS hour, status, COUNT(*) FROM {TABLE} "
                 "WHERE scheduled_for >= %s AND scheduled_for < %s GROUP BY 1, 2", hours.sql_params())
    counts: dict[int, dict[str, int]] = {}
    for hour, status, runs in rows:
        counts.setdefault(_hour_number(hour), {})[status] = runs
    return counts


@dataclass(frozen=True)
class Spread:
    """How long one hour's runs took at a step: how many were measured, and the percentiles."""

    runs: int
    p50: float
    p95: float


@dataclass
class HourSpreads:
    lag: dict[int, Spread] = field(default_factory=dict)  # slot to sent (beat)
    wait: dict[int, Spread] = field(default_factory=dict)  # sent to started (the queue)
    one_in: int = 1  # measured over every run, or over a random one in this many


def lag_and_wait_per_hour(*, hours: Hours, counts: dict[int, dict[str, int]], now: datetime) -> HourSpreads:
    """Dispatch lag (slot to sent) and queue wait (sent to started), p50 and p95 per hour.

    Percentiles by nearest rank: the smallest value with at least p% of the hour's values at or
    below it. A settled hour (monitoring.models.LedgerHour) is read from its summary, made the
    first time it is asked for: a week is 168 hours, and sorting every run of each for its
    percentiles was half of the week's page. `counts` (runs_per_hour's) says which hours are
    settled and whether a summary still counts the runs the ledger holds.

    The other hours are computed here: PostgreSQL computes the percentiles in the query
    (percentile_disc is that definition), over every run. SQLite has no percentile function:
    there each run's two durations are computed in SQL and ranked in Python (ranking them with
    ROW_NUMBER in SQLite measured four times slower), over every run up to SAMPLE_ABOVE, else over
    a random sample of about that many (never stored as a summary), so a busy week is neither
    sorted whole nor held in memory.
    """
    totals = {number: sum(by_status.values()) for number, by_status in counts.items()}
    settled = {number for number in hours.numbers
               if hour_start(number + 1) <= now - SETTLED_AFTER
               and not any(counts.get(number, {}).get(status) for status in UNFINISHED)}
    spreads = HourSpreads()
    summarised = set()
    for summary in LedgerHour.objects.filter(hour__gte=hours.start, hour__lt=hours.end):
        number = int(summary.hour.timestamp()) // 3600
        if number in settled and summary.runs == totals.get(number, 0):
            _spreads_add(spreads, number, summary.lag_runs, summary.lag_p50, summary.lag_p95, summary.wait_runs,
                         summary.wait_p50, summary.wait_p95)
            summarised.add(number)
    computed = [number for number in hours.numbers if number not in summarised]
    timed, params = _timed_sql(computed)
    if not computed:
        rows = []
    elif connection.vendor == "postgresql":
        rows = _rows(_percentiles_sql(timed), params)
    else:
        spreads.one_in, rows = _percentiles_ranked_in_python(timed, params)
    measured = {}
    for hour, *spread in rows:
        measured[_hour_number(hour)] = spread
        _spreads_add(spreads, _hour_number(hour), *spread)
    if spreads.one_in == 1:
        _summaries_store({number: measured.get(number) for number in computed if number in settled}, totals, now=now)
    return spreads


def week_summarised(*, now: datetime) -> None:
    """The summaries of every settled hour the longest window shows, made now if missing: the
    evaluator calls this every few minutes, so that even the first view of a week finds them
    made (computing a week's hours took longer than the page may)."""
    hours = Hours.ending_at(now, count=WINDOWS[-1].hours)
    lag_and_wait_per_hour(hours=hours, counts=runs_per_hour(hours=hours), now=now)


# A summary is made of an hour that ended this long ago and has no unfinished run: its runs'
# slots, sends and starts are all written.
SETTLED_AFTER = timedelta(hours=1)
UNFINISHED = (ScheduleRun.Status.CLAIMED, ScheduleRun.Status.SENT, ScheduleRun.Status.RUNNING)


def _spreads_add(spreads: HourSpreads, number: int, lag_runs, lag_p50, lag_p95, wait_runs, wait_p50,
                 wait_p95) -> None:
    if lag_runs:
        spreads.lag[number] = Spread(lag_runs, lag_p50, lag_p95)
    if wait_runs:
        spreads.wait[number] = Spread(wait_runs, wait_p50, wait_p95)


def _summaries_store(measured: dict[int, list | None], totals: dict[int, int], *, now: datetime) -> None:
    """A LedgerHour for each settled hour just computed (an hour without a sent run has none to
    measure: its summary says so, with empty percentiles)."""
    summaries = [LedgerHour(hour=hour_start(number), runs=totals.get(number, 0), made_at=now,
                            **dict(zip(SUMMARY_FIELDS, spread or (0, None, None, 0, None, None), strict=True)))
                 for number, spread in measured.items()]
    # Another request may have made the same hours: the newer numbers win, both are the same.
    LedgerHour.objects.bulk_create(summaries, update_conflicts=True, unique_fields=["hour"],
                                   update_fields=["runs", *SUMMARY_FIELDS, "made_at"])


SUMMARY_FIELDS = ("lag_runs", "lag_p50", "lag_p95", "wait_runs", "wait_p50", "wait_p95")


def _timed_sql(numbers: list[int]) -> tuple[str, list]:
    """Each sent run of the given hours with its hour, lag and wait; the hours as few ranges of
    the slot index as they make (usually one: the hours since the newest settled one)."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and spans[-1][1] == number:
            spans[-1][1] = number + 1
        else:
            spans.append([number, number + 1])
    ranges = " OR ".join(["(scheduled_for >= %s AND scheduled_for < %s)"] * len(spans)) or "FALSE"
    params = [connection.ops.adapt_datetimefield_value(hour_start(number)) for span in spans for number in span]
    return (f"SELECT {_hour_of('scheduled_for')} AS hour, {_duration('scheduled_for', 'sent_at')} AS lag, "
            f"{_duration('sent_at', 'started_at')} AS wait FROM {TABLE} "
            f"WHERE ({ranges}) AND sent_at IS NOT NULL"), params


def _percentiles_sql(timed: str) -> str:
    measures = ", ".join(
        f"COUNT({measure}), " + ", ".join(_seconds(f"percentile_disc({p / 100}) WITHIN GROUP (ORDER BY {measure})")
                                          for p in PERCENTILES)
        for measure in ("lag", "wait"))
    return f"SELECT hour, {measures} FROM ({timed}) AS timed GROUP BY hour"


def _percentiles_ranked_in_python(timed: str, params: list) -> tuple[int, list[tuple]]:
    # An upper bound (runs not sent yet are counted too): enough to size it.
    in_window = _rows(f"SELECT COUNT(*) FROM ({timed}) AS timed", params)[0][0]
    one_in = max(1, math.ceil(in_window / SAMPLE_ABOVE))
    # random(), not the id: beat inserts each tick's runs in the same order, so every k-th id
    # would be the same schedules every time.
    sample = f"{timed} AND abs(random()) %% {one_in} = 0" if one_in > 1 else timed
    by_hour: dict[str, tuple[list[float], list[float]]] = {}
    for hour, lag, wait in _rows(sample, params):
        lags, waits = by_hour.setdefault(hour, ([], []))
        lags.append(lag)
        if wait is not None:
            waits.append(wait)
    return one_in, [(hour, *_ranked(lags), *_ranked(waits)) for hour, (lags, waits) in by_hour.items()]


def _ranked(values: list[float]) -> tuple:
    """How many values, and the value at rank ceil(p% of them) for each percentile."""
    values.sort()
    # -(-a // b) is the ceiling in integers: 0.95 * n in floating point may fall just under it.
    return len(values), *(values[-(-len(values) * p // 100) - 1] if values else None for p in PERCENTILES)


@dataclass(frozen=True)
class SlowSchedule:
    schedule_id: int | None  # None once the schedule was deleted; its runs keep the name
    name: str
    runs: int
    average: float
    longest: float


def slowest_schedules(*, hours: Hours, limit: int = SLOWEST_SHOWN) -> list[SlowSchedule]:
    """The schedules whose finished runs of the window took longest on average (start to end)."""
    rows = _rows(f"SELECT schedule_id, schedule_name, COUNT(*), {_seconds('AVG(took)')}, {_seconds('MAX(took)')} "
                 f"FROM (SELECT schedule_id, schedule_name, {_duration('started_at', 'finished_at')} AS took "
                 f"FROM {TABLE} WHERE scheduled_for >= %s AND scheduled_for < %s AND started_at IS NOT NULL "
                 "AND finished_at IS NOT NULL) AS finished "
                 "GROUP BY schedule_id, schedule_name ORDER BY AVG(took) DESC, schedule_name LIMIT %s",
                 [*hours.sql_params(), limit])
    return [SlowSchedule(*row) for row in rows]


def health_counts() -> dict[str, int]:
    return dict(ScheduleHealth.objects.values_list("state").annotate(schedules=Count("pk")).order_by())


# --- Workers now -------------------------------------------------------------------

@dataclass
class WorkerNow:
    node: str
    last_beat_at: datetime | None  # None: running runs, but no heartbeat ever recorded
    alive: bool
    running: list[ScheduleRun] = field(default_factory=list)


def workers_now(*, now: datetime) -> list[WorkerNow]:
    """Workers alive, and any other holding a running run (a stale one: hung or killed), each with
    its running runs, oldest first."""
    workers = {beat.worker: WorkerNow(beat.worker, beat.last_beat_at, True) for beat in WorkerHeartbeat.fresh(now=now)}
    running = list(ScheduleRun.objects.filter(status=ScheduleRun.Status.RUNNING)
                   .only("id", "schedule_name", "worker", "started_at").order_by("started_at", "id")[:RUNNING_READ])
    silent = {node_of(run.worker) for run in running} - workers.keys()
    last_beats = dict(WorkerHeartbeat.objects.filter(worker__in=silent).values_list("worker", "last_beat_at"))
    for node in silent:
        workers[node] = WorkerNow(node, last_beats.get(node), False)
    for run in running:
        workers[node_of(run.worker)].running.append(run)
    return sorted(workers.values(), key=lambda worker: (not worker.alive, worker.node))


def node_of(holder: str) -> str:
    """The worker's node name in a run's holder, `nodename:pid:token` (shared.claims.holder_name)."""
    return holder.rsplit(":", 2)[0] if holder.count(":") >= 2 else holder
