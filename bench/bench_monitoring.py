"""Monitoring at 10,000 schedules and 1,000,000 runs in PostgreSQL, beside the plain admin index.

Issue 12's benchmark: the evaluator's pass, /metrics, the dashboard and the admin's home page.

Data, in a scratch database migrated with `manage.py migrate` and filled with generate_series:
N interval schedules (PeriodicTask + ScheduleState), a few every minute and every 5 minutes,
about 5% hourly and the rest daily, each slot of a schedule one ScheduleRun row (unique per
(schedule, slot), a unique task id), every slot of the last 30 days until the ledger holds R
rows (the every-minute schedules are cut short to hit R exactly). That is what beat would have
recorded with these schedules, about R/30 runs a day; the heap is in slot order, as beat writes
it. Old runs: 3% failed, 1% missed, 0.5% skipped, the rest succeeded. The
newest runs make some schedules bad on purpose (by a hash of the schedule's number): 2% failing
(3 failed in a row), 1% down with a missed run, 1% late or down with a run sent and not started,
0.5% down with a run past its maximum run time, 0.5% late or down with a slot beat did not send,
1% paused (disabled), 0.3% new (no run); every other schedule is up, its newest run just sent,
running or succeeded. One fresh beat heartbeat and two worker heartbeats, refreshed before each
measurement; ALERT_EMAILS has one address, so each alerted flip makes a delivery. ANALYZE after
loading.

Measured in one process with DJANGO_SETTINGS_MODULE=wiring.settings (DEBUG off), a superuser
logged in with Django's test Client (client.force_login), the whole request through every
middleware, so each figure includes the session and user lookups a browser's request pays:

- the evaluator: `monitoring.evaluator.evaluation_pass`, called directly with `now` pinned to the
  moment the data was made (so every repetition sees the same states). The first pass (every
  ScheduleHealth row created, one flip with its delivery per bad schedule) after emptying the
  health, flip and delivery tables each time; then steady passes (nothing changed: the reads,
  `assess` for every schedule and the heartbeat write), after an ANALYZE as autovacuum would do.
- `/metrics` with the bearer token, its 10 s per-process cache emptied before every request as
  the tests do (`metrics._rendered["at"] = -inf`), so each is a full render; size in bytes and
  lines.
- the dashboard `/admin/monitoring/dashboard/`, 24 hours (the default) and `?window=7d`.
- the admin's home page `/admin/`: Django's admin index with our template on top, which renders
  monitoring.status's system status above the app list.
- the baseline, the plain Django admin index: the same view, `admin.site.index`, with the same
  app list, base template, session and login, through the same URL, but with `index_template`
  set (only for those requests) to a copy of django.contrib.admin's own `admin/index.html`
  (found under a name of its own in a template folder the bench adds, since monitoring's
  `admin/index.html` shadows the stock one). So ours minus the baseline is the status panel.

Each figure is the median of the repetitions (one untimed warm-up of each first); the web
figures are interleaved, one of each per round in a rotating order, so a change in the shared
machine's load hits all of them alike. Goals (issue 12), printed as PASS or FAIL: an evaluator
pass under 1 s (the first and the steady pass, each), `/metrics` under 500 ms, the dashboard
under 300 ms (each window). Then, per figure, one more untimed run with its SQL captured
(CaptureQueriesContext): the number of queries, the time in their execute calls (PostgreSQL's
work and the rows' transfer; turning the rows into Python objects, the ORM, assess, templates and
prometheus-client count as Python), the slowest statements, and the time in the figure's main
functions. `--explain` prints EXPLAIN (ANALYZE, BUFFERS) of each figure's slowest statements,
`--profile` the functions that take most of each figure's time (cProfile; its overhead inflates
Python's share).

    .venv/bin/python bench/bench_monitoring.py [--schedules 10000] [--runs 1000000]
        [--repetitions 5] [--quick] [--explain] [--profile] [--keep]
        [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
from postgres_server import PostgresServer

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from wiring.embedded_redis import EmbeddedRedis  # noqa: E402

PYTHON = sys.executable
RUN_DB = "bench_monitoring"
DAYS = 30
TOKEN = "bench-metrics-token-" + "x" * 24
GOAL_EVALUATOR_S, GOAL_METRICS_S, GOAL_DASHBOARD_S = 1.0, 0.5, 0.3
PLAIN_INDEX = "bench_plain_admin/index.html"
TASK_NAMES = ["reports.tasks.report_send", "scraping.tasks.scrape_source", "cleanup.tasks.retention_sweep",
              "scheduler.tasks.heartbeat"]
BEAT_NODE = "beat-host:4242"
WORKERS = ["celery@worker1", "celery@worker2"]

# period name, seconds, django-celery-beat (every, period), share of the schedules (daily: the rest)
CLASSES = [("minute", 60, (1, "minutes"), 0.0005), ("5min", 300, (5, "minutes"), 0.002),
           ("hourly", 3600, (1, "hours"), 0.046), ("daily", 86400, (1, "days"), None)]


# --- the plan: each schedule's period, scenario and runs ------------------------------------------

@dataclass
class Planned:
    number: int
    name: str
    task: str
    period_s: int
    scenario: str
    runs: int
    age_s: float  # from its newest slot to the reference moment
    duration_s: float  # a typical run's length
    enabled: bool


def scenario_of(number: int) -> str:
    mark = number * 7919 % 1000
    for limit, scenario in ((10, "paused"), (30, "failing"), (40, "missed"), (50, "not_started"),
                            (55, "overrun"), (60, "not_sent"), (63, "new")):
        if mark < limit:
            return scenario
    return "up"


def grace_and_max_run(period_s: int) -> tuple[float, float]:
    """scheduler.health.knobs_of's defaults (TASK_TIME_LIMIT 30 min)."""
    return min(max(period_s / 2, 30), 15 * 60), min(max(period_s, 60), 30 * 60)


def plan(schedules: int, runs: int) -> list[Planned]:
    counts = {}
    for name, _, _, share in CLASSES[:-1]:
        counts[name] = max(1, round(schedules * share))
    counts["daily"] = schedules - sum(counts.values())
    if counts["daily"] < 1:
        sys.exit("--schedules is too small for the mix of periods")
    periods = [(name, seconds) for name, seconds, _, _ in CLASSES for _ in range(counts[name])]
    scenarios = [scenario_of(number) for number in range(1, schedules + 1)]
    full = [0 if scenario == "new" else DAYS * 86400 // seconds
            for (_, seconds), scenario in zip(periods, scenarios, strict=True)]
    # Every slot of 30 days for each schedule, the longest histories cut to one length `cap` so
    # that the ledger holds `runs` rows (the every-minute schedules first).
    low, high = 0, max(full)
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(n, middle) for n in full) <= runs:
            low = middle
        else:
            high = middle - 1
    cap = low
    per_schedule = [min(n, cap) for n in full]
    short = runs - sum(per_schedule)
    for index, n in enumerate(full):  # the remainder, one more run each where there is room
        if short <= 0:
            break
        if n > per_schedule[index]:
            per_schedule[index] += 1
            short -= 1
    planned = []
    for index, ((period_name, seconds), scenario) in enumerate(zip(periods, scenarios, strict=True)):
        number = index + 1
        grace, max_run = grace_and_max_run(seconds)
        late_or_down = 1.5 if number % 2 else 2.5  # overdue by half a grace (late) or by 1.5 (down)
        age = {
            "not_started": grace * late_or_down,
            "overrun": max_run * 1.5 + 60,
            "not_sent": seconds + grace * late_or_down,
        }.get(scenario, (number * 104729 % (seconds * 10)) / 10)
        duration = min(seconds * 0.4, 0.05 + (number * 31 % 600) / 10)
        planned.append(Planned(number, f"bench-{number:05d}-{period_name}", TASK_NAMES[number % len(TASK_NAMES)],
                               seconds, scenario, per_schedule[index], age, duration, scenario != "paused"))
    return planned


# --- the scratch database -------------------------------------------------------------------------

def child_env(database_url: str, redis_url: str, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, DATA_DIR=str(data_dir),
               SECRET_KEY="bench-only-key-" + "x" * 40, LOG_LEVEL="WARNING",
               DJANGO_SETTINGS_MODULE="wiring.settings", METRICS_TOKEN=TOKEN, ALERT_EMAILS="ops@example.com",
               ALLOWED_HOSTS="testserver,localhost", DEBUG="false")
    return env


class Database(PostgresServer):
    name = RUN_DB  # the scratch database; bench_admin.py loads the same data into its own

    @property
    def url(self) -> str:
        return self.database_url(self.name)

    def create(self, workdir: Path, redis_url: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", f"CREATE DATABASE {self.name}")
        # collectstatic too: the admin pages render with DEBUG off, which needs its manifest (a
        # fresh checkout that never ran `make run` has none).
        for command in (["migrate", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=PROJECT, check=True,
                           env=child_env(self.url, redis_url, workdir), stdout=subprocess.DEVNULL)

    def load(self, planned: list[Planned], reference: datetime) -> dict:
        with psycopg.connect(self.url, autocommit=True) as db:
            # Nothing but the bench's schedules: whatever a migration seeded goes, with what refers to it.
            db.execute("TRUNCATE django_celery_beat_periodictask CASCADE")
            db.execute("CREATE TEMP TABLE plan (number int, name text, task text, period_s int, scenario text, "
                       "runs int, age_s float8, duration_s float8, enabled bool)")
            with db.cursor().copy("COPY plan FROM STDIN") as copy:
                for row in planned:
                    copy.write_row(list(asdict(row).values()))
            db.execute("ANALYZE plan")
            intervals = {}
            for _, seconds, (every, period), _ in CLASSES:
                intervals[seconds] = db.execute(
                    "INSERT INTO django_celery_beat_intervalschedule (every, period) VALUES (%s, %s) RETURNING id",
                    (every, period)).fetchone()[0]
            db.execute("CREATE TEMP TABLE intervals (period_s int, id int)")
            for seconds, interval_id in intervals.items():
                db.execute("INSERT INTO intervals VALUES (%s, %s)", (seconds, interval_id))
            params = {"ref": reference}
            db.execute(
                "INSERT INTO django_celery_beat_periodictask (id, name, task, args, kwargs, enabled, last_run_at, "
                "total_run_count, date_changed, description, interval_id, one_off, headers) "
                "SELECT p.number, p.name, p.task, '[]', '{}', p.enabled, "
                "  CASE WHEN p.runs > 0 THEN %(ref)s - make_interval(secs => p.age_s) END, p.runs, %(ref)s, '', "
                "  i.id, false, '{}' FROM plan p JOIN intervals i USING (period_s) ORDER BY p.number", params)
            db.execute("SELECT setval(pg_get_serial_sequence('django_celery_beat_periodictask', 'id'), %s)",
                       (len(planned),))
            db.execute(
                "INSERT INTO scheduler_schedulestate (task_id, next_due_at, fingerprint, problem, synced_at) "
                "SELECT number, %(ref)s - make_interval(secs => age_s) + make_interval(secs => period_s), "
                "  'bench', '', %(ref)s FROM plan", params)
            started = time.monotonic()
            db.execute(RUNS_SQL, params)
            db.execute("SELECT setval(pg_get_serial_sequence('scheduler_schedulerun', 'id'), "
                       "(SELECT max(id) FROM scheduler_schedulerun))")
            db.execute(
                "INSERT INTO scheduler_beatheartbeat (node, started_at, last_beat_at) VALUES (%s, now() - interval "
                "'1 day', now())", (BEAT_NODE,))
            for worker in WORKERS:
                db.execute("INSERT INTO scheduler_workerheartbeat (worker, first_beat_at, last_beat_at, beats) "
                           "VALUES (%s, now() - interval '1 day', now(), 1440)", (worker,))
            loaded_s = time.monotonic() - started
            db.execute("VACUUM ANALYZE")
            by_status = dict(db.execute("SELECT status, count(*) FROM scheduler_schedulerun GROUP BY 1 ORDER BY 1"))
            windows = db.execute(
                "SELECT count(*) FILTER (WHERE scheduled_for >= now() - interval '1 hour'), "
                "count(*) FILTER (WHERE scheduled_for >= now() - interval '24 hours'), "
                "count(*) FILTER (WHERE scheduled_for >= now() - interval '7 days'), min(scheduled_for), count(*) "
                "FROM scheduler_schedulerun").fetchone()
            size = db.execute("SELECT pg_size_pretty(pg_total_relation_size('scheduler_schedulerun'))").fetchone()[0]
            server = db.execute("SELECT version()").fetchone()[0].split(" on ")[0].split(" (")[0]
        return {"by_status": by_status, "last_hour": windows[0], "last_day": windows[1], "last_week": windows[2],
                "oldest": windows[3].isoformat(), "rows": windows[4], "loaded_s": loaded_s, "size": size,
                "server": server}

    def drop(self) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


# Each schedule's runs, newest (k = 0) first in the series, inserted in slot order. The newest
# runs follow the schedule's scenario; older ones are 3% failed, 1% missed, 0.5% skipped.
RUNS_SQL = """
INSERT INTO scheduler_schedulerun (id, schedule_id, schedule_name, task_name, scheduled_for, kind, status, reason,
    task_id, claimed_by, claimed_at, claimed_until, sent_at, started_at, finished_at, worker, lease_until, error,
    output)
SELECT row_number() OVER (ORDER BY slot, number), number, name, task, slot, 'scheduled', status,
    CASE status WHEN 'missed' THEN 'its slot was older than the starting deadline (60 s) when beat came back'
                WHEN 'skipped' THEN 'skipped: the previous run was still running' ELSE '' END,
    md5(number || ':' || k)::uuid::text, 'beat-host:4242:5f0c', slot - interval '8 seconds', NULL,
    CASE WHEN status NOT IN ('missed', 'skipped') THEN slot + make_interval(secs => lag) END,
    CASE WHEN status IN ('running', 'succeeded', 'failed') THEN slot + make_interval(secs => lag + wait) END,
    CASE WHEN status IN ('succeeded', 'failed') THEN slot + make_interval(secs => lag + wait + took)
         WHEN status IN ('missed', 'skipped') THEN slot + make_interval(secs => lag) END,
    CASE WHEN status IN ('running', 'succeeded', 'failed')
         THEN 'celery@worker' || (1 + number %% 2) || ':' || (3100 + number %% 4) || ':a1b2c3' ELSE '' END,
    CASE WHEN status = 'running' THEN %(ref)s + interval '60 seconds' END,
    CASE WHEN status = 'failed' THEN E'Traceback (most recent call last):\\n  File "tasks.py", line 42, in run\\n'
         || E'    response.raise_for_status()\\nRuntimeError: upstream answered 503 Service Unavailable' ELSE '' END,
    CASE WHEN status = 'succeeded' THEN jsonb_build_object('rows', (luck * 1000)::int, 'note', 'done') END
FROM (
    SELECT p.number, p.name, p.task, k, slot, luck,
        0.02 + random() * 0.5 + CASE WHEN random() < 0.01 THEN 5 ELSE 0 END AS lag,
        0.005 + random() * 2 AS wait, p.duration_s * (0.5 + random()) AS took,
        CASE
            WHEN p.scenario = 'failing' AND k < 3 THEN 'failed'
            WHEN p.scenario = 'missed' AND k = 0 THEN 'missed'
            WHEN p.scenario = 'not_started' AND k = 0 THEN 'sent'
            WHEN p.scenario = 'overrun' AND k = 0 THEN 'running'
            WHEN k = 0 AND p.age_s < 2 THEN 'sent'
            WHEN k = 0 AND p.age_s < 2 + p.duration_s THEN 'running'
            WHEN k = 0 THEN 'succeeded'
            WHEN luck < 0.03 THEN 'failed'
            WHEN luck < 0.04 THEN 'missed'
            WHEN luck < 0.045 THEN 'skipped'
            ELSE 'succeeded'
        END AS status
    FROM plan p
    CROSS JOIN LATERAL generate_series(0, p.runs - 1) AS k
    CROSS JOIN LATERAL (SELECT %(ref)s - make_interval(secs => p.age_s + k * p.period_s) AS slot,
                               random() AS luck) AS drawn
) AS runs
ORDER BY slot, number
"""


# --- the measuring process ------------------------------------------------------------------------

def child_main(figures_path: Path, repetitions: int, reference: datetime, explain: bool, profile: bool) -> None:
    # A template folder of the bench's own with the stock admin index under a name nothing
    # shadows: the baseline (added before Django builds its template engine).
    import django.contrib.admin
    from django.conf import settings

    plain_dir = figures_path.parent / "templates"
    (plain_dir / PLAIN_INDEX).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(django.contrib.admin.__file__).parent / "templates" / "admin" / "index.html",
                plain_dir / PLAIN_INDEX)
    settings.TEMPLATES[0]["DIRS"] = [*settings.TEMPLATES[0]["DIRS"], str(plain_dir)]
    import django

    django.setup()
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from monitoring import metrics
    from monitoring.evaluator import evaluation_pass
    from monitoring.models import LedgerHour
    from scheduler.models import BeatHeartbeat, ScheduleHealth, WorkerHeartbeat

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-password")
    client = Client()
    client.force_login(user)
    started_at = reference - timedelta(hours=1)
    passes = {"flips": [], "schedules": 0}

    def fresh_heartbeats() -> None:
        now = timezone.now()
        BeatHeartbeat.objects.update(last_beat_at=now)
        WorkerHeartbeat.objects.update(last_beat_at=now)

    def tables_emptied() -> None:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE monitoring_alertdelivery, monitoring_flip, scheduler_schedulehealth, "
                           "monitoring_systemhealth, monitoring_evaluatorheartbeat")

    def evaluator_pass() -> None:
        result = evaluation_pass(node="evaluator-bench:1", started_at=started_at, now=reference)
        passes["flips"].append(len(result.flips))
        passes["schedules"] = result.schedules

    def get(path: str, **headers) -> callable:
        def request():
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.status_code, response.content[:500])
            return response
        return request

    metrics_get = get("/metrics", Authorization=f"Bearer {TOKEN}")

    def metrics_uncached():
        metrics._rendered["at"] = float("-inf")
        return metrics_get()

    home = get("/admin/")

    def plain_index():
        admin.site.index_template = PLAIN_INDEX
        try:
            return home()
        finally:
            admin.site.index_template = None

    week = get("/admin/monitoring/dashboard/?window=7d")
    web = {"metrics": metrics_uncached, "dashboard_24h": get("/admin/monitoring/dashboard/"),
           "dashboard_7d": week, "dashboard_7d_cold": week, "home": home, "plain_index": plain_index}
    # Untimed, before each of its requests: the week's hourly summaries gone, so it measures what
    # the first view of the week pays (every hour computed, and the settled ones summarised).
    prepare = {"dashboard_7d_cold": lambda: LedgerHour.objects.all().delete()}
    times = {name: [] for name in ["evaluator_first", "evaluator_steady", *web]}
    machine = {"load_before": os.getloadavg(), "cpu_before": machine_busy()}

    # The first pass: the health rows, the flips and their deliveries made anew each time.
    fresh_heartbeats()
    for repetition in range(repetitions + 1):
        tables_emptied()
        began = time.perf_counter()
        evaluator_pass()
        if repetition:  # the first one warms up
            times["evaluator_first"].append(time.perf_counter() - began)
    first_flips = passes["flips"][-1]
    first_rows = ScheduleHealth.objects.count()
    # A pass records at most QUIET_FIRST_PER_PASS quiet first-seen schedules: the passes after the
    # first record the rest (timed too); the steady passes come once every schedule has its row.
    catch_up = []
    while ScheduleHealth.objects.count() < passes["schedules"] and len(catch_up) < 20:
        began = time.perf_counter()
        evaluator_pass()
        catch_up.append(time.perf_counter() - began)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    for repetition in range(repetitions + 1):
        fresh_heartbeats()
        began = time.perf_counter()
        evaluator_pass()
        if repetition:
            times["evaluator_steady"].append(time.perf_counter() - began)
    steady_flips = passes["flips"][-1]

    sizes = {}
    fresh_heartbeats()
    for name, request in web.items():  # warm-up: templates compiled, code imported
        response = request()
        sizes[name] = len(response.content)
        if name == "metrics":
            text = response.content.decode()
            sizes["metrics_lines"] = text.count("\n")
            sizes["metrics_samples"] = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        if name == "home":
            assert b'id="system-status"' in response.content
        if name == "plain_index":
            assert b'id="system-status"' not in response.content and b"app-scheduler" in response.content
    names = list(web)
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            fresh_heartbeats()
            prepare.get(name, lambda: None)()
            began = time.perf_counter()
            web[name]()
            times[name].append(time.perf_counter() - began)
    machine.update(load_after=os.getloadavg(), cpu_after=machine_busy())

    # One more untimed run of each: its SQL captured, and the time spent in its parts.
    contenders = {"evaluator_first": lambda: (tables_emptied(), evaluator_pass()),
                  "evaluator_steady": evaluator_pass, **web}
    queries = {}
    for name, contender in contenders.items():
        if name == "evaluator_steady":
            evaluator_pass()  # after the captured first pass, steady again
        fresh_heartbeats()
        prepare.get(name, lambda: None)()
        spent, undo = timed_calls(PARTS.get(name, []))
        try:
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                contender()
                took = time.perf_counter() - began
        finally:
            undo()
        timed = sorted(((float(query["time"]), query["sql"]) for query in captured.captured_queries), reverse=True)
        plans = []
        if explain:
            for _, sql in timed[:2]:
                if sql.lstrip().upper().startswith("SELECT"):
                    with connection.cursor() as cursor:
                        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                        plans.append((sql, "\n".join(row[0] for row in cursor.fetchall())))
        queries[name] = {"count": len(timed), "sql_s": sum(seconds for seconds, _ in timed), "wall_s": took,
                         "slowest": timed[:4], "plans": plans, "parts": spent}
    # /metrics: reading the ledger into metric families, beside turning those families into text.
    from prometheus_client import CollectorRegistry, generate_latest

    from monitoring.collector import LedgerCollector

    collected, texts = [], []
    for _ in range(3):  # medians of 3
        began = time.perf_counter()
        families = list(LedgerCollector().collect())
        collected.append(time.perf_counter() - began)
        rendered = CollectorRegistry()
        rendered.register(type("Collected", (), {"collect": lambda self, done=families: iter(done)})())
        began = time.perf_counter()
        generate_latest(rendered)
        texts.append(time.perf_counter() - began)
    queries["metrics"]["parts"] = {"collector (queries + families)": statistics.median(collected),
                                   "prometheus-client text": statistics.median(texts)}
    profiles = {}
    if profile:
        import cProfile
        import io
        import pstats

        for name, contender in contenders.items():
            if name == "evaluator_steady":
                evaluator_pass()
            fresh_heartbeats()
            profiler = cProfile.Profile()
            profiler.runcall(contender)
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(14)
            stats.sort_stats("cumulative").print_stats(r"main/(monitoring|scheduler|shared)/", 14)
            profiles[name] = out.getvalue()

    states = dict(ScheduleHealth.objects.values_list("state").annotate(n=Count("pk")).order_by())
    figures_path.write_text(json.dumps({
        "times": times, "sizes": sizes, "first_flips": first_flips, "steady_flips": steady_flips,
        "schedules_watched": passes["schedules"], "first_rows": first_rows, "catch_up": catch_up,
        "states": states, "queries": queries, "profiles": profiles,
        "machine": machine,
    }))


# Functions timed in the captured run (module, function): where each figure's time goes.
PARTS = {
    "evaluator_first": [("monitoring.evaluator", "schedules_watched"), ("scheduler.health_reads", "_newest_runs"),
                        ("monitoring.evaluator", "assess"), ("monitoring.evaluator", "_schedule_record"),
                        ("monitoring.evaluator", "deliveries_create"), ("monitoring.evaluator", "_system_flips"),
                        ("monitoring.evaluator", "ScheduleHealth.objects.bulk_create")],
    "dashboard_24h": [("monitoring.dashboard", name) for name in
                      ("runs_per_hour", "lag_and_wait_per_hour", "slowest_schedules", "health_counts", "queue_lengths",
                       "workers_now")],
    "home": [("monitoring.templatetags.monitoring_status", "read_system_status")],
}
PARTS["evaluator_steady"] = PARTS["evaluator_first"] + [("monitoring.evaluator", "_reminder")]
PARTS["dashboard_7d"] = PARTS["dashboard_7d_cold"] = PARTS["dashboard_24h"]


def timed_calls(parts: list[tuple[str, str]]) -> tuple[dict, callable]:
    """Wrap each module.attribute(.attribute...) so the time spent in it adds up in the returned
    dict (by its last name); and the undo."""
    import importlib

    spent, undos = {}, []
    for module_name, path in parts:
        *parents, name = path.split(".")
        owner = importlib.import_module(module_name)
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)
        label = path if parents else name
        spent[label] = 0.0

        def timed(*args, _label=label, _original=original, **kwargs):
            began = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - began

        own = name in vars(owner)
        setattr(owner, name, timed)
        undos.append((owner, name, original if own else None))

    def undo() -> None:
        for owner, name, original in reversed(undos):
            if original is None:
                delattr(owner, name)  # a method of its class: the instance's wrapper goes
            else:
                setattr(owner, name, original)

    return spent, undo


def machine_busy() -> tuple[float, float]:
    """(now, CPU seconds the whole machine has been busy so far): other engineers' work counts too."""
    times = psutil.cpu_times()
    return time.monotonic(), sum(times) - times.idle - getattr(times, "iowait", 0)


# --- the report -----------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def report(args, loaded: dict, figures: dict) -> None:
    times = figures["times"]
    median = {name: statistics.median(values) for name, values in times.items()}
    sizes = figures["sizes"]
    print(f"\n== {loaded['server']}: {args.schedules:,} schedules, {loaded['rows']:,} runs since "
          f"{loaded['oldest'][:16]} ({loaded['size']} with indexes; last hour {loaded['last_hour']:,}, "
          f"24 h {loaded['last_day']:,}, 7 days {loaded['last_week']:,}), medians of {args.repetitions}")
    print("ledger by status: " + ", ".join(f"{status} {count:,}" for status, count in loaded["by_status"].items())
          + f"; loaded in {loaded['loaded_s']:.0f} s")
    print("health after the first pass: " + ", ".join(f"{state} {count:,}" for state, count in
                                                       sorted(figures["states"].items(), key=lambda kv: -kv[1])))
    rows = [
        (f"evaluator, first pass ({figures['first_rows']:,} of {figures['schedules_watched']:,} health rows made, "
         f"{figures['first_flips']} flips)", median["evaluator_first"], f"goal < {GOAL_EVALUATOR_S:g} s",
         GOAL_EVALUATOR_S),
        (f"evaluator, the {len(figures['catch_up'])} passes recording the rest (the slowest)",
         max(figures["catch_up"] or [0.0]), f"goal < {GOAL_EVALUATOR_S:g} s", GOAL_EVALUATOR_S),
        (f"evaluator, steady pass ({figures['steady_flips']} flips)", median["evaluator_steady"],
         f"goal < {GOAL_EVALUATOR_S:g} s", GOAL_EVALUATOR_S),
        ("/metrics, uncached render", median["metrics"], f"goal < {GOAL_METRICS_S * 1000:.0f} ms", GOAL_METRICS_S),
        ("dashboard, 24 h", median["dashboard_24h"], f"goal < {GOAL_DASHBOARD_S * 1000:.0f} ms", GOAL_DASHBOARD_S),
        ("dashboard, 7 days", median["dashboard_7d"], f"goal < {GOAL_DASHBOARD_S * 1000:.0f} ms", GOAL_DASHBOARD_S),
        ("dashboard, 7 days, first view (no hour summarised yet)", median["dashboard_7d_cold"],
         f"goal < {GOAL_DASHBOARD_S * 1000:.0f} ms", GOAL_DASHBOARD_S),
    ]
    width = 62
    print(f"\n{'figure':{width}}{'ours':>11}  {'baseline / goal':<28}{'ratio':>7}  ")
    for label, ours, goal_text, goal in rows:
        print(f"{label:{width}}{milliseconds(ours):>11}  {goal_text:<28}{ours / goal:>7.2f}  {verdict(ours < goal)}")
    plain = median["plain_index"]
    print(f"{'admin home page /admin/ (system status + app list)':{width}}{milliseconds(median['home']):>11}  "
          f"{'plain admin index ' + milliseconds(plain):<28}{median['home'] / plain:>7.2f}  -")
    for name, label in (("metrics", "/metrics"), ("dashboard_24h", "dashboard, 24 h"),
                        ("dashboard_7d", "dashboard, 7 days")):
        print(f"{label + ' beside the plain admin index':{width}}{milliseconds(median[name]):>11}  "
              f"{'plain admin index ' + milliseconds(plain):<28}{median[name] / plain:>7.2f}  -")
    print(f"{'/metrics size':{width}}{sizes['metrics'] / 1000:>8,.0f} KB  {sizes['metrics']:,} bytes, "
          f"{sizes['metrics_lines']:,} lines, {sizes['metrics_samples']:,} samples")
    print(f"{'page sizes':{width}}dashboard 24 h {sizes['dashboard_24h'] / 1000:,.0f} KB, 7 days "
          f"{sizes['dashboard_7d'] / 1000:,.0f} KB, home {sizes['home'] / 1000:,.0f} KB, plain index "
          f"{sizes['plain_index'] / 1000:,.0f} KB")
    print("\nspread (min - max of the repetitions): " + "; ".join(
        f"{name} {milliseconds(min(values))} - {milliseconds(max(values))}" for name, values in times.items()))
    machine = figures["machine"]
    (start, busy_start), (end, busy_end) = machine["cpu_before"], machine["cpu_after"]
    print(f"machine during the measurements: {(busy_end - busy_start) / (end - start):.2f} of "
          f"{psutil.cpu_count()} cores busy (this bench and PostgreSQL included), load average "
          f"{machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} after")

    print("\nSQL of one more run of each (captured: in SQL is the execute calls, PostgreSQL's work and the "
          "transfer; rows made into Python objects count as Python):")
    print(f"{'':18}{'queries':>8}{'wall':>10}{'in SQL':>10}{'Python':>10}  slowest statements")
    for name, found in figures["queries"].items():
        slowest = ", ".join(f"{seconds * 1000:.0f} ms" for seconds, _ in found["slowest"][:3])
        print(f"{name:18}{found['count']:>8}{milliseconds(found['wall_s']):>10}{milliseconds(found['sql_s']):>10}"
              f"{milliseconds(found['wall_s'] - found['sql_s']):>10}  {slowest}")
    print("\nwhere the time goes in that run (functions timed; nested ones counted in their callers too):")
    for name, found in figures["queries"].items():
        if found.get("parts"):
            parts = ", ".join(f"{part} {milliseconds(seconds)}" for part, seconds in found["parts"].items())
            print(f"  {name}: {parts}")
    for name, found in figures["queries"].items():
        print(f"\n-- {name}: its slowest statements")
        for seconds, sql in found["slowest"][:3]:
            sql = shortened(sql)
            print(f"   {seconds * 1000:7.1f} ms  {sql[:600]}{'...' if len(sql) > 600 else ''}")
        for sql, text in found["plans"]:
            print(f"   EXPLAIN (ANALYZE, BUFFERS) of {shortened(sql)[:160]}...\n"
                  + "\n".join("      " + shortened(line)[:240] for line in text.splitlines()))
    for name, text in figures["profiles"].items():
        print(f"\n-- cProfile, {name}\n{text}")


def shortened(sql: str) -> str:
    """Long literal lists (10,000 schedule ids) cut to their length."""
    return re.sub(r"'?\{[0-9,]{80,}\}'?|\(([0-9]+, ){20,}[0-9]+\)",
                  lambda found: f"<{found.group(0).count(',') + 1} ids>", sql)


def bench_arguments(description: str, *, quick: str, explain: str, database: str) -> argparse.ArgumentParser:
    """The options this bench and bench_admin.py share (the data's size, repetitions, the server)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--explain", action="store_true", help=explain)
    parser.add_argument("--keep", action="store_true", help=f"keep the scratch database ({database})")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser


def reachable_database(args, database_class: type) -> "Database | None":
    """The server to load into, with --quick applied to `args`; None (said) when it is not reachable."""
    if args.quick:
        args.schedules, args.runs, args.repetitions = 500, 50_000, 3
    database = database_class(args.postgres_url)
    if not database.reachable():
        print(f"\n== PostgreSQL: not reachable at {args.postgres_url}; skipped (set BENCH_POSTGRES_URL)")
        return None
    return database


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0], quick="500 schedules, 50,000 runs, 3 repetitions",
                             explain="EXPLAIN ANALYZE each figure's slowest statements", database=RUN_DB)
    parser.add_argument("--profile", action="store_true", help="cProfile each figure once")
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.repetitions, datetime.fromisoformat(args.reference), args.explain, args.profile)
        return
    database = reachable_database(args, Database)
    if database is None:
        return
    planned = plan(args.schedules, args.runs)
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedRedis(workdir / "redis")
        try:
            redis_url = broker.start()
            import redis

            queued = redis.Redis.from_url(redis_url)
            queued.rpush("default", *[b"{}"] * 12)
            queued.rpush("scraping", *[b"{}"] * 3)
            queued.close()
            database.create(workdir, redis_url)
            reference = datetime.now(UTC).replace(microsecond=0)
            loaded = database.load(planned, reference)
            figures_path = workdir / "figures.json"
            command = [PYTHON, __file__, "--child", str(figures_path), "--repetitions", str(args.repetitions),
                       "--reference", reference.isoformat()]
            command += ["--explain"] * args.explain + ["--profile"] * args.profile
            subprocess.run(command, cwd=PROJECT, env=child_env(database.url, redis_url, workdir), check=True)
            figures = json.loads(figures_path.read_text())
        finally:
            broker.stop()
            if not args.keep:
                database.drop()
    report(args, loaded, figures)


if __name__ == "__main__":
    main()
