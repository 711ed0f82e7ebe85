"""What /metrics says, read from the run ledger, the heartbeats and Redis when Prometheus scrapes.

A custom Collector instead of counters kept in memory: gunicorn's and Celery's prefork processes
would each hold a part of such counters and lose it on restart, while the ledger is whole and
shared. A deleted schedule drops out of the output by itself.

Each family is one aggregate query over every schedule (never a query per schedule), so a scrape
costs the same dozen queries at ten schedules or ten thousand. Labels are bounded: a schedule's
name, a state, an outcome, a queue, a channel, a status; never a run, task id, URL, error text or
process, which would make a new series per run (celery-exporter's hostname label did).
"""

import operator
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from functools import reduce

from django.apps import apps
from django.db.models import (
    Count,
    F,
    FloatField,
    Func,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from cleanup.models import CleanupRun
from monitoring.models import AlertDelivery, EvaluatorHeartbeat
from scheduler.broker import queue_lengths
from scheduler.health import State
from scheduler.health_reads import liveness
from scheduler.models import ScheduleRun
from scraping.health import source_health
from scraping.models import Change, FetchRecord, Source

# Dispatch lag and queue wait are read over the runs due in this window (by the ledger's
# index on the slot), so a scrape reads the last hour, not the whole ledger.
RECENT = timedelta(hours=1)
PERCENTILES = (50, 95)
LEDGER_NOTE = ("Counted over the rows the ledger still holds: it drops when cleanup removes old rows, "
               "which Prometheus reads as a counter reset.")


class LedgerCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        schedules = list(_schedules())
        yield from _schedule_families(schedules)
        yield _slots_family()
        yield from _wait_families(now=now)
        yield from _liveness_families(now=now)
        yield from _queue_families()
        yield from _delivery_families()
        yield from _scraping_families(now=now)


def _schedules() -> QuerySet:
    """Every schedule with its health, next slot, last success and last duration, in one query:
    each "newest run" is a correlated subquery the (schedule, slot) unique index answers by
    reading backwards from the schedule's newest slot."""
    ran = _newest_run(status__in=ScheduleRun.FINISHED, started_at__isnull=False, finished_at__isnull=False)
    # Times as Unix seconds from the database itself: Django's conversion of 20,000 datetimes
    # (psycopg's Python one) was most of this query's cost.
    return PeriodicTask.objects.order_by("name").values(
        "id", "name", state=F("health__state"), next_due_at=EpochSeconds("scheduler_state__next_due_at"),
        last_success_at=Subquery(_newest_run(status=ScheduleRun.Status.SUCCEEDED)
                                 .annotate(at=EpochSeconds("finished_at")).values("at")[:1]),
        last_duration=Subquery(ran.annotate(took=SecondsBetween("started_at", "finished_at")).values("took")[:1]),
    )


def _newest_run(**conditions) -> QuerySet:
    return ScheduleRun.objects.filter(schedule=OuterRef("pk"), **conditions).order_by("-scheduled_for")


# Each schedule's samples from the last scrape, by the values they were made from: most
# schedules' values are the same from one scrape to the next (a daily job's), and making 40,000
# sample objects was a quarter of a scrape at 10,000 schedules. Replaced whole each scrape, so a
# deleted schedule's go with it. Scrapes render one at a time (metrics._render_lock).
_samples_made: dict[tuple, tuple[Sample, ...]] = {}

STATE = "sched_schedule_state"
LAST_SUCCESS = "sched_schedule_last_success_timestamp_seconds"
NEXT_DUE = "sched_schedule_next_due_timestamp_seconds"
LAST_DURATION = "sched_schedule_last_duration_seconds"


def _schedule_families(schedules: list[dict]) -> Iterator[Metric]:
    # Only the current state's sample (1): the six zeros per schedule of a full StateSet were
    # 60,000 lines at 10,000 schedules, most of a scrape's time, and `== 1` selects the same.
    families = {
        STATE: GaugeMetricFamily(STATE, "1 for the state each schedule is in, as the evaluator last saw it (new "
                                 "until it has judged the schedule); no sample for other states.",
                                 labels=["schedule", "state"]),
        LAST_SUCCESS: GaugeMetricFamily(LAST_SUCCESS, "When the schedule's newest succeeded run finished (Unix time).",
                                        labels=["schedule"]),
        NEXT_DUE: GaugeMetricFamily(NEXT_DUE, "When the schedule's next slot is due (Unix time).", labels=["schedule"]),
        LAST_DURATION: GaugeMetricFamily(LAST_DURATION, "How long the schedule's newest finished run ran, start to "
                                         "finish.", labels=["schedule"]),
    }
    made = {}
    for schedule in schedules:
        key = (schedule["name"], schedule["state"] or State.NEW, schedule["last_success_at"], schedule["next_due_at"],
               schedule["last_duration"])
        samples = _samples_made.get(key) or _schedule_samples(*key)
        made[key] = samples
        for sample in samples:
            families[sample.name].samples.append(sample)
    _samples_made.clear()
    _samples_made.update(made)
    yield from families.values()


def _schedule_samples(name: str, state: str, last_success: float | None, next_due: float | None,
                      last_duration: float | None) -> tuple[Sample, ...]:
    # A schedule that never succeeded (or has no next slot) has no sample: 0 would read as 1970.
    known = ((LAST_SUCCESS, last_success), (NEXT_DUE, next_due), (LAST_DURATION, last_duration))
    return (Sample(STATE, {"schedule": name, "state": state}, 1),
            *(Sample(family, {"schedule": name}, value) for family, value in known if value is not None))


def _slots_family() -> Metric:
    """Finished slots by outcome (the ledger status), from one GROUP BY that the status index
    answers alone; a run still in flight has no outcome yet. Not by schedule: at 10,000
    schedules that was most of a scrape, and each schedule's state says the same per schedule."""
    counts = (ScheduleRun.objects.filter(status__in=ScheduleRun.FINISHED).order_by()
              .values_list("status").annotate(runs=Count("*")))
    return _tally(CounterMetricFamily, "sched_slots_total", "Finished slots by outcome "
                  f"(succeeded, failed, skipped, missed, not_enqueued). {LEDGER_NOTE}", ["outcome"], counts)


def _wait_families(*, now: datetime) -> Iterator[Metric]:
    recent = ScheduleRun.objects.filter(scheduled_for__gte=now - RECENT)
    # Manual runs are sent when a person asks, not by beat at a slot: no dispatch lag to speak of.
    sent = recent.exclude(kind=ScheduleRun.Kind.MANUAL).filter(sent_at__isnull=False)
    started = recent.filter(sent_at__isnull=False, started_at__isnull=False)
    yield _quantile_family("sched_dispatch_lag_seconds", "From a slot to beat sending its run",
                           _percentiles(sent, SecondsBetween("scheduled_for", "sent_at")))
    yield _quantile_family("sched_queue_wait_seconds", "From a run being sent to a worker starting it",
                           _percentiles(started, SecondsBetween("sent_at", "started_at")))


class SecondsBetween(Func):
    """Seconds from the first moment to the second, in the database's own arithmetic: Django's
    datetime subtraction calls back into Python for every row on SQLite (ten times slower)."""

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)::float8"
    arg_joiner = " - "

    def __init__(self, start: str, end: str) -> None:
        super().__init__(F(end), F(start))

    def as_sqlite(self, compiler, connection, **extra):
        # julianday is a double of days: tens of microseconds of noise at today's dates, so to
        # the millisecond.
        return self.as_sql(compiler, connection, template="round((julianday(%(expressions)s)) * 86400.0, 3)",
                           arg_joiner=") - julianday(", **extra)


class EpochSeconds(Func):
    """A moment as Unix seconds, computed by the database."""

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)::float8"

    def __init__(self, field: str) -> None:
        super().__init__(F(field))

    def as_sqlite(self, compiler, connection, **extra):
        # julianday is a double of days, microseconds off at today's dates: to the millisecond.
        return self.as_sql(compiler, connection,
                           template="round((julianday(%(expressions)s) - 2440587.5) * 86400.0, 3)", **extra)


def _percentiles(runs: QuerySet, seconds: SecondsBetween) -> list[float]:
    """The PERCENTILES of `seconds` over `runs` by nearest rank (the smallest value with at least
    p% of them at or below it), ranked in the database in one query: two rows come back, not
    the window's runs."""
    # order_by(): the ledger's default order would sort the window's rows a second time.
    ranked = (runs.order_by().annotate(seconds=seconds)
              .annotate(place=Window(RowNumber(), order_by=F("seconds").asc()), measured=Window(Count("*"))))
    # Integer arithmetic: in floating point 0.95 × n may fall just under a whole rank.
    at_rank = [(F("measured") * percent + 99) / 100 for percent in PERCENTILES]
    found = ranked.filter(reduce(operator.or_, (Q(place=rank) for rank in at_rank)))
    rows = list(found.values_list("measured", "place", "seconds"))
    if not rows:
        return []
    count, by_place = rows[0][0], {place: value for _, place, value in rows}
    # To the millisecond, below which SQLite's julianday arithmetic is noise.
    return [round(by_place[(count * percent + 99) // 100], 3) for percent in PERCENTILES]


def _quantile_family(name: str, what: str, values: list[float]) -> Metric:
    family = GaugeMetricFamily(name, f"{what}: p50 and p95 over the runs due in the last hour (gauges, "
                               "not a summary: the window slides). No sample while there were none.",
                               labels=["quantile"])
    for percent, value in zip(PERCENTILES, values, strict=False):
        family.add_metric([str(percent / 100)], value)
    return family


def _liveness_families(*, now: datetime) -> Iterator[Metric]:
    live = liveness(now=now)
    yield GaugeMetricFamily("sched_workers_alive", "Workers whose heartbeat is fresh.", value=live.workers)
    yield GaugeMetricFamily("sched_beats_alive", "Beat processes whose heartbeat is fresh.", value=live.beats)
    last_pass = EvaluatorHeartbeat.objects.aggregate(at=Max("last_beat_at"))["at"]
    # 0 (not no sample) when no evaluator ever ran, so `time() - x > 300` alerts on it too.
    yield GaugeMetricFamily("sched_evaluator_last_pass_timestamp_seconds",
                            "When an evaluator last finished a pass (Unix time; 0: never).",
                            value=last_pass.timestamp() if last_pass else 0)


def _queue_families() -> Iterator[Metric]:
    lengths = queue_lengths()
    yield GaugeMetricFamily("sched_redis_up", "1 when the broker's Redis answered this scrape, else 0.",
                            value=0 if lengths is None else 1)
    yield _tally(GaugeMetricFamily, "sched_queue_length", "Messages waiting in each Celery queue in Redis "
                 "(no sample while Redis does not answer).", ["queue"], (lengths or {}).items())


def _delivery_families() -> Iterator[Metric]:
    yield _tally(CounterMetricFamily, "sched_alerts_total", "Alert deliveries by channel and status (pending, "
                 "sending, sent, printed, failed); counted over the rows kept, like the ledger.",
                 ["channel", "status"], _grouped(AlertDelivery.objects, "channel", "status"))
    yield _tally(CounterMetricFamily, "sched_cleanup_rows_deleted_total",
                 "Rows deleted by the cleanup engine per retention target (dry runs left out).", ["target"],
                 CleanupRun.objects.filter(dry_run=False).order_by().values_list("target")
                 .annotate(rows=Sum("rows_deleted")))
    # Looked up by name, not imported: reports and monitoring are independent apps of one layer.
    deliveries = apps.get_model("reports", "ReportDelivery").objects
    yield _tally(CounterMetricFamily, "sched_report_deliveries_total",
                 "Report e-mails by delivery status (pending, sending, sent, failed).", ["status"],
                 _grouped(deliveries, "status"))


def _scraping_families(*, now: datetime) -> Iterator[Metric]:
    yield _tally(CounterMetricFamily, "scrape_fetches_total", "Fetches by outcome, over the fetch records kept.",
                 ["outcome"], _grouped(FetchRecord.objects, "outcome"))
    yield GaugeMetricFamily("scrape_changes_pending", "Changes waiting for a reviewer.",
                            value=Change.objects.filter(status=Change.Status.PENDING).count())
    states = dict.fromkeys(Source.Health.values, 0)
    health_fields = ("last_fetch_at", "last_outcome", "last_detail", "failures_in_row", "last_ok_at", "every_minutes")
    for source in Source.objects.only(*health_fields):
        states[source_health(source, now=now)[0]] += 1
    yield _tally(GaugeMetricFamily, "scrape_sources", "Sources in each health state.", ["state"], states.items())


def _grouped(objects, *fields: str) -> QuerySet:
    return objects.order_by().values_list(*fields).annotate(rows=Count("*"))


def _tally(kind: type, name: str, documentation: str, labels: list[str], rows: Iterable[tuple]) -> Metric:
    """A family of `kind` with one sample per row of (label values..., value)."""
    family = kind(name, documentation, labels=labels)
    for *values, count in rows:
        family.add_metric([str(value) for value in values], count)
    return family
