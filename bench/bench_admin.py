"""The task results, run ledger and schedule lists in the admin at 1,000,000 rows, beside stock.

Issue 15's goals 1 and 2. Data, in a scratch PostgreSQL database migrated with `manage.py migrate`:
bench_monitoring.py's 10,000 schedules and 1,000,000 ledger runs (its `plan` and loader: interval
schedules, every slot of the last 30 days, 3% failed, 1% missed, 0.5% skipped), of which 0.1% are
made manual and 0.5% catch-up runs; and one TaskResult per run, as django-celery-results writes
with extended results (the run's task id, schedule name, task, worker, times, a JSON result, the
traceback of a failure), inserted in the order their results were done. VACUUM ANALYZE after.

Measured in one process with DJANGO_SETTINGS_MODULE=wiring.settings (DEBUG off), a superuser
logged in with Django's test Client, every request through every middleware. Ours is the admin
the site serves (`/admin/`). Stock is a second AdminSite in the same process (`/stock/`) with
django-celery-results' own TaskResultAdmin and django-celery-beat's own PeriodicTaskAdmin; the run
ledger has no stock admin, so its baseline is a plain ModelAdmin with Django's defaults and the
same filters (schedule, status, kind) and a search on the schedule name. The same data, session
and URLs apart from each admin's own parameters (ours filters results by `schedule=<id>`, stock by
`periodic_task_name__exact=<name>`; ours reaches the oldest results by `oldest=1`, stock by the
last page number; ours' substring search is opted into with `contains=1`).

Each figure is the median of the repetitions (one untimed warm-up of each first), interleaved:
one of each page per round, in a rotating order, so a change in the shared machine's load hits
all alike. Goals (issue 15), printed as PASS or FAIL on ours: every results page under 100 ms but
the substring searches, under 500 ms; every ledger and schedule list under 100 ms. Then one more
untimed request of each with its SQL captured: queries, time in their execute calls, the slowest
statement; and each page's size (the stock schedule filter renders every schedule).

    .venv/bin/python bench/bench_admin.py [--schedules 10000] [--runs 1000000] [--repetitions 5]
        [--quick] [--keep] [--reuse] [--explain]
        [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from bench_monitoring import Database as MonitoringDatabase
from bench_monitoring import bench_arguments, child_env, machine_busy, plan, reachable_database, shortened

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from wiring.embedded_redis import EmbeddedRedis  # noqa: E402

PYTHON = sys.executable
RUN_DB = "bench_admin"
GOAL_PAGE_S, GOAL_TEXT_SEARCH_S = 0.1, 0.5

# 0.1% of the runs manual and 0.5% catch-up: the kind filter's rare choices.
KINDS_SQL = """
UPDATE scheduler_schedulerun SET kind = CASE WHEN id % 1000 = 7 THEN 'manual' ELSE 'catch_up' END
WHERE id % 1000 = 7 OR id % 200 = 3
"""

# One result per run, as a worker with result_extended writes it, in the order they were done.
RESULTS_SQL = """
INSERT INTO django_celery_results_taskresult (task_id, status, content_type, content_encoding, result, date_done,
    traceback, meta, task_args, task_kwargs, task_name, worker, date_created, date_started, periodic_task_name)
SELECT r.task_id,
    CASE r.status WHEN 'succeeded' THEN 'SUCCESS' WHEN 'failed' THEN 'FAILURE' WHEN 'running' THEN 'STARTED'
                  WHEN 'sent' THEN 'PENDING' ELSE 'REVOKED' END,
    'application/json', 'utf-8',
    CASE WHEN r.status = 'succeeded' THEN r.output::text
         WHEN r.status = 'failed' THEN '{"exc_type": "RuntimeError", "exc_message": ["upstream answered 503 '
                                       'Service Unavailable"], "exc_module": "builtins"}' END,
    coalesce(r.finished_at, r.started_at, r.sent_at, r.scheduled_for), NULLIF(r.error, ''), '{"children": []}',
    '()', '{}', r.task_name, NULLIF(split_part(r.worker, ':', 1), ''),
    coalesce(r.sent_at, r.scheduled_for), r.started_at, r.schedule_name
FROM scheduler_schedulerun r
ORDER BY coalesce(r.finished_at, r.started_at, r.sent_at, r.scheduled_for), r.id
"""


class Database(MonitoringDatabase):
    name = RUN_DB

    def exists(self) -> bool:
        with psycopg.connect(self.server_url, autocommit=True) as db:
            return db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone() is not None

    def load(self, planned, reference: datetime) -> dict:
        loaded = super().load(planned, reference)
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(KINDS_SQL)
            started = time.monotonic()
            db.execute(RESULTS_SQL)
            loaded["results_loaded_s"] = time.monotonic() - started
            db.execute("VACUUM ANALYZE")
        return loaded

    def migrate(self, workdir: Path, redis_url: str) -> None:
        """A kept database brought up to the code's migrations (our indexes), then analysed."""
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, check=True,
                       env=child_env(self.url, redis_url, workdir), stdout=subprocess.DEVNULL)
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute("ANALYZE")

    def describe(self) -> dict:
        with psycopg.connect(self.url, autocommit=True) as db:
            def one(sql: str):
                return db.execute(sql).fetchone()

            return {
                "server": one("SELECT version()")[0].split(" on ")[0].split(" (")[0],
                "schedules": one("SELECT count(*) FROM django_celery_beat_periodictask")[0],
                "runs": one("SELECT count(*) FROM scheduler_schedulerun")[0],
                "results": one("SELECT count(*) FROM django_celery_results_taskresult")[0],
                "kinds": dict(db.execute("SELECT kind, count(*) FROM scheduler_schedulerun GROUP BY 1 ORDER BY 1")),
                "states": dict(db.execute("SELECT status, count(*) FROM django_celery_results_taskresult "
                                          "GROUP BY 1 ORDER BY 2 DESC")),
                "sizes": {table: one(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))")[0]
                          for table in ("scheduler_schedulerun", "django_celery_results_taskresult")},
            }


# --- the measuring process ------------------------------------------------------------------------

def stock_site():
    """django-celery-results' and django-celery-beat's own admin classes, and a plain ledger admin."""
    from django.contrib import admin
    from django_celery_beat.admin import PeriodicTaskAdmin
    from django_celery_beat.models import PeriodicTask
    from django_celery_results.admin import TaskResultAdmin
    from django_celery_results.models import TaskResult

    from scheduler.models import ScheduleRun

    class PlainScheduleRunAdmin(admin.ModelAdmin):
        list_display = ["scheduled_for", "schedule_name", "status", "kind", "started_at", "finished_at", "worker"]
        list_filter = ["schedule", "status", "kind"]
        search_fields = ["schedule_name"]

    site = admin.AdminSite(name="stock")
    site.register(TaskResult, TaskResultAdmin)
    site.register(PeriodicTask, PeriodicTaskAdmin)
    site.register(ScheduleRun, PlainScheduleRunAdmin)
    return site


def pages_to_measure() -> dict[str, tuple[str, str, float]]:
    """name: (ours' URL, stock's URL, goal in seconds), from the data: a schedule in the middle."""
    from django_celery_beat.models import PeriodicTask
    from django_celery_results.models import TaskResult

    schedule = PeriodicTask.objects.order_by("id")[PeriodicTask.objects.count() // 2]
    result = TaskResult.objects.filter(periodic_task_name=schedule.name).order_by("id").first()
    per_page = 100
    last_page = (TaskResult.objects.count() + per_page - 1) // per_page
    number = schedule.name.split("-")[1]  # bench-05000-daily: "05000", in this schedule's name only
    results, stock_results = "/admin/django_celery_results/taskresult/", "/stock/django_celery_results/taskresult/"
    ledger, stock_ledger = "/admin/scheduler/schedulerun/", "/stock/scheduler/schedulerun/"
    schedules, stock_schedules = "/admin/django_celery_beat/periodictask/", "/stock/django_celery_beat/periodictask/"
    page, text = GOAL_PAGE_S, GOAL_TEXT_SEARCH_S
    return {
        "results: list": (results, stock_results, page),
        "results: state FAILURE": (f"{results}?status=FAILURE", f"{stock_results}?status__exact=FAILURE", page),
        "results: schedule": (f"{results}?schedule={schedule.pk}",
                              f"{stock_results}?periodic_task_name__exact={schedule.name}", page),
        "results: schedule + FAILURE": (f"{results}?schedule={schedule.pk}&status=FAILURE",
                                        f"{stock_results}?periodic_task_name__exact={schedule.name}"
                                        "&status__exact=FAILURE", page),
        "results: day (today)": (f"{results}?day=today",
                                 f"{stock_results}?date_done__gte={datetime.now(UTC).date()}%2000:00%2B00:00", page),
        "results: exact task id": (f"{results}?q={result.task_id}", f"{stock_results}?q={result.task_id}", page),
        "results: short task id": (f"{results}?q={result.task_id[:8]}", f"{stock_results}?q={result.task_id[:8]}",
                                   page),
        "results: schedule name": (f"{results}?q={schedule.name}", f"{stock_results}?q={schedule.name}", page),
        "results: substring, rare": (f"{results}?q={number}&contains=1", f"{stock_results}?q={number}", text),
        "results: substring, common": (f"{results}?q=retention&contains=1", f"{stock_results}?q=retention", text),
        "results: substring, none": (f"{results}?q=no-such-text&contains=1", f"{stock_results}?q=no-such-text",
                                     text),
        "results: last page": (f"{results}?oldest=1", f"{stock_results}?p={last_page}", page),
        "ledger: list": (ledger, stock_ledger, page),
        "ledger: kind manual": (f"{ledger}?kind=manual", f"{stock_ledger}?kind__exact=manual", page),
        "ledger: schedule": (f"{ledger}?schedule={schedule.pk}", f"{stock_ledger}?schedule__id__exact={schedule.pk}",
                             page),
        "ledger: schedule name search": (f"{ledger}?q={number}", f"{stock_ledger}?q={number}", page),
        "schedules: list": (schedules, stock_schedules, page),
    }


def child_main(figures_path: Path, repetitions: int, explain: bool) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import clear_url_caches, path

    from wiring import urls

    urls.urlpatterns.append(path("stock/", stock_site().urls))
    clear_url_caches()
    get_user_model().objects.filter(username="bench").delete()  # a kept database's from the last run
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-password")
    client = Client()
    client.force_login(user)
    pages = pages_to_measure()

    def get(url: str):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:500])
        return response

    sizes = {}
    for name, (ours, stock, _) in pages.items():  # warm-up: templates compiled, code imported
        sizes[name] = (len(get(ours).content), len(get(stock).content))
    times = {name: ([], []) for name in pages}
    machine = {"load_before": os.getloadavg(), "cpu_before": machine_busy()}
    names = list(pages)
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            for side in (0, 1) if repetition % 2 else (1, 0):
                began = time.perf_counter()
                get(pages[name][side])
                times[name][side].append(time.perf_counter() - began)
    machine.update(load_after=os.getloadavg(), cpu_after=machine_busy())

    queries = {}
    for name, urls_of_page in pages.items():
        queries[name] = []
        for url in urls_of_page[:2]:
            connection.queries_log.clear()  # stock's ledger page runs thousands: the log holds 9,000
            with CaptureQueriesContext(connection) as captured:
                get(url)
            timed = sorted(((float(query["time"]), query["sql"]) for query in captured.captured_queries),
                           reverse=True)
            plans = []
            if explain and timed and timed[0][1].lstrip().upper().startswith("SELECT"):
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + timed[0][1])
                    plans.append("\n".join(row[0] for row in cursor.fetchall()))
            queries[name].append({"count": len(timed), "sql_s": sum(seconds for seconds, _ in timed),
                                  "slowest": timed[:1], "plans": plans})
    figures_path.write_text(json.dumps({"pages": {name: [url for url in urls_of_page[:2]]
                                                  for name, urls_of_page in pages.items()},
                                        "goals": {name: goal for name, (_, _, goal) in pages.items()},
                                        "times": times, "sizes": sizes, "queries": queries, "machine": machine}))


# --- the report -----------------------------------------------------------------------------------

def query_count(count: int) -> str:
    """Django's query log keeps the last 9,000: stock's ledger page runs more (a query per schedule)."""
    return f"{count}+" if count >= 9000 else str(count)


def report(args, described: dict, figures: dict) -> None:
    print(f"\n== {described['server']}: {described['schedules']:,} schedules, {described['runs']:,} runs "
          f"({described['sizes']['scheduler_schedulerun']}), {described['results']:,} task results "
          f"({described['sizes']['django_celery_results_taskresult']}), medians of {args.repetitions}")
    print("runs by kind: " + ", ".join(f"{kind} {count:,}" for kind, count in described["kinds"].items()))
    print("results by state: " + ", ".join(f"{state} {count:,}" for state, count in described["states"].items()))
    width = 32
    print(f"\n{'page':{width}}{'ours':>9}{'stock':>10}{'ratio':>8}  {'goal':>8}       "
          f"{'queries':>12}{'KB ours / stock':>18}  slowest statement ours / stock")
    for name, (ours, stock) in figures["times"].items():
        ours_s, stock_s = statistics.median(ours), statistics.median(stock)
        goal = figures["goals"][name]
        counted = figures["queries"][name]
        size_ours, size_stock = figures["sizes"][name]
        slowest = " / ".join(f"{found['slowest'][0][0] * 1000:.0f} ms" if found["slowest"] else "-"
                             for found in counted)
        print(f"{name:{width}}{ours_s * 1000:>6.0f} ms{stock_s * 1000:>7.0f} ms{ours_s / stock_s:>8.2f}  "
              f"< {goal * 1000:>3.0f} ms  {'PASS' if ours_s < goal else 'FAIL'}"
              f"{counted[0]['count']:>5} /{query_count(counted[1]['count']):>6}"
              f"{size_ours / 1000:>9.0f} / {size_stock / 1000:<6.0f}"
              f"  {slowest}")
    print("\nspread, ours (stock), min - max: " + "; ".join(
        f"{name} {min(ours) * 1000:.0f}-{max(ours) * 1000:.0f} ({min(stock) * 1000:.0f}-{max(stock) * 1000:.0f})"
        for name, (ours, stock) in figures["times"].items()))
    machine = figures["machine"]
    (start, busy_start), (end, busy_end) = machine["cpu_before"], machine["cpu_after"]
    print(f"machine during the measurements: {(busy_end - busy_start) / (end - start):.2f} of {os.cpu_count()} "
          f"cores busy (this bench and PostgreSQL included), load average {machine['load_before'][0]:.2f} "
          f"before, {machine['load_after'][0]:.2f} after")
    print("\nthe URLs (ours, stock): " + "; ".join(f"{name}: {ours} , {stock}"
                                                     for name, (ours, stock) in figures["pages"].items()))
    for name, counted in figures["queries"].items():
        for side, found in zip(("ours", "stock"), counted, strict=True):
            for seconds, sql in found["slowest"]:
                sql = shortened(sql)
                print(f"\n-- {name}, {side}: slowest of {found['count']} statements, {seconds * 1000:.1f} ms\n   "
                      f"{sql[:500]}{'...' if len(sql) > 500 else ''}")
            for text in found["plans"]:
                print("\n".join("      " + line[:200] for line in text.splitlines()))


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0], quick="500 schedules, 50,000 runs and results, 3 repetitions",
                             explain="EXPLAIN ANALYZE each page's slowest statement", database=RUN_DB)
    parser.add_argument("--reuse", action="store_true", help=f"measure a kept {RUN_DB} again (migrated first)")
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.repetitions, args.explain)
        return
    database = reachable_database(args, Database)
    if database is None:
        return
    with tempfile.TemporaryDirectory(prefix="bench-admin-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedRedis(workdir / "redis")
        try:
            redis_url = broker.start()
            if args.reuse and database.exists():
                database.migrate(workdir, redis_url)
            else:
                database.create(workdir, redis_url)
                database.load(plan(args.schedules, args.runs), datetime.now(UTC).replace(microsecond=0))
            described = database.describe()
            figures_path = workdir / "figures.json"
            command = [PYTHON, __file__, "--child", str(figures_path), "--repetitions", str(args.repetitions)]
            command += ["--explain"] * args.explain
            subprocess.run(command, cwd=PROJECT, env=child_env(database.url, redis_url, workdir), check=True)
            figures = json.loads(figures_path.read_text())
        finally:
            broker.stop()
            if not (args.keep or args.reuse):
                database.drop()
    report(args, described, figures)


if __name__ == "__main__":
    main()
