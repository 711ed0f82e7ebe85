"""The worker's recorded path beside a results-only task (issue 15, goal 5), with a real worker.

One `celery -A scheduler worker -P prefork -c 2` reading the `default` queue of a private Redis,
on a scratch database (PostgreSQL: made and dropped by the bench; SQLite: a file in a temporary
folder). The same trivial task body (bench/worker_tasks.py) runs two ways, N messages of each
queued up front while the worker's consumer is paused (Celery's cancel_consumer), then resumed:

- stock: Celery's own Task, sent with `send_task`; django-celery-results stores its result, as
  for any task of the app. The baseline.
- ours: the app's RecordedTask, sent the way beat sends a run: N schedules, one ledger run each
  claimed by the bench, then published through scheduler.publish.runs_publish (the run headers,
  the runs marked sent). The worker marks each run started, holds its lease while it executes
  and records the outcome, and django-celery-results stores the task result as for stock.

Measured from the moment the consumer is resumed to the last result stored (TaskResult.date_done;
ours' last ledger outcome too): tasks/s; the worker's CPU per task (user + system of the main
process and its pool children, psutil, from the resume to the moment the bench saw every task
done); on PostgreSQL, commits and new database sessions per task (pg_stat_database, read 11 s
after the last task, once every backend has flushed its statistics; the bench's own polls are
taken off). Kinds alternate in each round on the same worker; the table gives each round and the
medians. The goal (ours at least 0.85 of stock's tasks/s) is printed as PASS or FAIL.

    .venv/bin/python bench/bench_worker.py [--tasks 5000] [--rounds 2] [--concurrency 2]
        [--database postgres|sqlite|both] [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
        [--profile DIR]

--profile DIR samples the worker with py-spy (PY_SPY, or py-spy on PATH) while the first round of
each kind runs, and writes its collapsed stacks and top frames to DIR (bench/beat_profile.py).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from beat_profile import Sampler
from postgres_server import PostgresServer
from worker_processes import Worker, machine_busy, workers_start

PROJECT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(PROJECT))

from wiring.embedded_redis import EmbeddedRedis  # noqa: E402

PYTHON = sys.executable
RUN_DB = "bench_worker"
KINDS = ("stock", "ours")
TASKS = {"stock": "bench.results_only", "ours": "bench.recorded"}
GOAL_RATIO = 0.85
POLL_S = 0.5
STATS_FLUSH_S = 11  # PostgreSQL backends flush their statistics at least every 10 s when idle
PUBLISH_BATCH = 500
# Variables of ours that the worker must not inherit from whoever started the bench.
CONFIG_VARIABLES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DATA_DIR", "WORKER_CONCURRENCY",
                    "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")


@dataclass
class Figures:
    kind: str
    seconds: float
    tasks: int
    worker_cpu: float
    commits: float | None = None
    sessions: float | None = None
    machine_cores: float = 0.0

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.worker_cpu / self.tasks


def child_env(*, database_url: str, redis_url: str, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    env.update(REDIS_URL=redis_url, DATA_DIR=str(data_dir), SECRET_KEY="bench-only-key-" + "x" * 40,
               DJANGO_SETTINGS_MODULE="scheduler.settings", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])))
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


# --- what is queued ---------------------------------------------------------------------------

def schedules_make(count: int) -> list:
    """`count` disabled schedules of the recorded task: each run of ours belongs to one, as beat's do."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    PeriodicTask.objects.bulk_create(
        PeriodicTask(name=f"bench-{index:06d}", task=TASKS["ours"], interval=every, enabled=False)
        for index in range(count))
    return list(PeriodicTask.objects.filter(name__startswith="bench-").order_by("id"))


def queue_stock(app, count: int) -> list[str]:
    with app.producer_or_acquire() as producer:
        return [app.send_task(TASKS["stock"], producer=producer).id for _ in range(count)]


def queue_ours(app, schedules: list, slot: datetime) -> list[str]:
    """One claimed ledger run per schedule for `slot`, published as beat publishes claimed runs."""
    import uuid

    from scheduler.claim import BEAT_CLAIM
    from scheduler.messages import dispatch_for
    from scheduler.models import ScheduleRun
    from scheduler.publish import runs_publish

    node, now = "bench-beat", datetime.now(UTC)
    runs = ScheduleRun.objects.bulk_create(
        ScheduleRun(schedule_id=task.id, schedule_name=task.name, task_name=task.task, scheduled_for=slot,
                    task_id=str(uuid.uuid4()), claimed_by=node, claimed_at=now,
                    claimed_until=now + timedelta(hours=1))
        for task in schedules)
    assert BEAT_CLAIM.lasts < timedelta(hours=1)
    by_id = {task.id: task for task in schedules}
    dispatches = [dispatch_for(run, by_id[run.schedule_id]) for run in runs]
    with app.producer_or_acquire() as producer:
        for start in range(0, len(dispatches), PUBLISH_BATCH):
            runs_publish(dispatches[start:start + PUBLISH_BATCH], app=app, producer=producer, node=node)
    return [run.task_id for run in runs]


# --- one measured pass ------------------------------------------------------------------------

def postgres_counters() -> tuple[int, int] | None:
    """(commits, sessions) of the bench's database so far; None on SQLite."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()


def finished(task_ids: list[str], kind: str) -> tuple[int, datetime | None]:
    """How many of `task_ids` are done (their result stored, and for ours the run's outcome), and
    when the last one was."""
    from django.db.models import Count, Max
    from django_celery_results.models import TaskResult

    from scheduler.models import ScheduleRun

    results = TaskResult.objects.filter(task_id__in=task_ids).aggregate(n=Count("id"), last=Max("date_done"))
    if kind == "stock":
        return results["n"], results["last"]
    runs = ScheduleRun.objects.filter(task_id__in=task_ids, status__in=ScheduleRun.FINISHED).aggregate(
        n=Count("id"), last=Max("finished_at"))
    last = max(filter(None, [results["last"], runs["last"]]), default=None)
    return min(results["n"], runs["n"]), last


def measured_pass(*, app, worker: Worker, node: str, kind: str, queue, profile: Path | None) -> Figures:
    app.control.cancel_consumer("default", destination=[node], reply=True, timeout=10)
    task_ids = queue()
    count = len(task_ids)
    before = postgres_counters()
    sampler = Sampler(worker.process.pid, profile / f"worker-{kind}") if profile else None
    cpu_before, machine_before, started = worker.cpu(), machine_busy(), datetime.now(UTC)
    app.control.add_consumer("default", destination=[node], reply=True, timeout=10)
    polls = 0
    deadline = time.monotonic() + 60 + count
    while True:
        done, last = finished(task_ids, kind)
        polls += 1
        if done >= count:
            break
        if worker.process.poll() is not None:
            sys.exit(f"the worker exited; see {worker.log}")
        if time.monotonic() > deadline:
            sys.exit(f"{kind}: {done} of {count} tasks done in time; see {worker.log}")
        time.sleep(POLL_S)
    cpu_after, machine_after = worker.cpu(), machine_busy()
    if sampler:
        sampler.stop()
    seconds = (last - started).total_seconds()
    figures = Figures(kind, seconds, count, cpu_after - cpu_before,
                      machine_cores=(machine_after - machine_before) / max(seconds, 1e-9))
    if before is not None:
        time.sleep(STATS_FLUSH_S)
        after = postgres_counters()
        # Each poll of the bench is a commit of its own (two for ours), and the read above is one.
        own = polls * (1 if kind == "stock" else 2) + 1
        figures.commits = (after[0] - before[0] - own) / count
        figures.sessions = (after[1] - before[1]) / count
    return figures


# --- one database, in a process of its own (Django is set up once per process) -----------------

def database_child(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp, EmbeddedRedis(Path(tmp) / "redis") as broker:
        workdir = Path(tmp)
        server = PostgresServer(args.postgres_url) if args.database == "postgres" else None
        if server:
            server.admin(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)", f"CREATE DATABASE {RUN_DB}")
        worker = None
        try:
            env = child_env(database_url=server.database_url(RUN_DB) if server else "", redis_url=broker.url,
                            data_dir=workdir / "data")
            subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            os.environ.update(env)
            import django

            django.setup()
            from wiring.celery import app

            schedules = schedules_make(args.tasks)
            worker = workers_start(1, args.concurrency, "prefork", env, workdir,
                                   extra=("--include", "worker_tasks", "-Q", "default"))[0]
            node = f"{worker.name}@{socket.gethostname()}"
            slot = datetime.now(UTC).replace(microsecond=0)
            passes: list[Figures] = []
            # Each pass of ours is the schedules' next slot (a run is unique per schedule and slot).
            queues = {"stock": lambda: queue_stock(app, args.tasks),
                      "ours": lambda: queue_ours(app, schedules, slot + timedelta(minutes=len(passes)))}
            profile = Path(args.profile) if args.profile else None
            if profile:
                profile.mkdir(parents=True, exist_ok=True)
            for round_ in range(args.rounds):
                for kind in KINDS:
                    print(f"-- {args.database}, round {round_ + 1}: {kind}, {args.tasks:,} tasks ...",
                          file=sys.stderr, flush=True)
                    passes.append(measured_pass(app=app, worker=worker, node=node, kind=kind, queue=queues[kind],
                                                profile=profile if round_ == 0 else None))
            report(args, passes)
            logged = [line for line in worker.log.read_text(errors="replace").splitlines()
                      if "ERROR" in line or "Traceback" in line]
            if logged:
                print(f"  the worker logged {len(logged)} error line(s); the first: {logged[0][:200]}")
        finally:
            if worker:
                worker.stop()
            if "django" in sys.modules and sys.modules["django"].apps.apps.ready:
                from django.db import connections

                connections.close_all()
            if server:
                server.admin(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)")


def report(args, passes: list[Figures]) -> None:
    def per(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(f"\n== {args.database}: {args.tasks:,} tasks a pass, worker -P prefork -c {args.concurrency}, "
          f"load average before: {args.load_before}")
    print("| round | kind | tasks/s | worker CPU ms/task | commits/task | new sessions/task | machine cores busy |")
    print("|---|---|---|---|---|---|---|")
    for index, figures in enumerate(passes):
        print(f"| {index // len(KINDS) + 1} | {figures.kind} | {figures.rate:.1f} | {figures.cpu_ms:.2f} | "
              f"{per(figures.commits)} | {per(figures.sessions, 3)} | {figures.machine_cores:.2f} |")
    median = {kind: statistics.median(f.rate for f in passes if f.kind == kind) for kind in KINDS}
    cpu = {kind: statistics.median(f.cpu_ms for f in passes if f.kind == kind) for kind in KINDS}
    rounds = [ours.rate / stock.rate for stock, ours in zip(passes[::2], passes[1::2], strict=True)]
    ratio = median["ours"] / median["stock"]
    print(f"\nmedians: stock {median['stock']:.1f} tasks/s, {cpu['stock']:.2f} ms CPU a task; "
          f"ours {median['ours']:.1f} tasks/s, {cpu['ours']:.2f} ms CPU a task "
          f"(+{cpu['ours'] - cpu['stock']:.2f} ms)")
    print(f"ratio ours/stock, tasks/s: {ratio:.2f} (each round: {', '.join(f'{r:.2f}' for r in rounds)})")
    print(f"  {'PASS' if ratio >= GOAL_RATIO else 'FAIL'}  ours at least {GOAL_RATIO} of stock's throughput")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000, help="messages of each kind a pass")
    parser.add_argument("--rounds", type=int, default=2, help="passes of each kind, alternating")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's pool processes")
    parser.add_argument("--database", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--profile", help="sample the worker with py-spy into this folder")
    parser.add_argument("--load-before", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.load_before = args.load_before or " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"worker bench: started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs", flush=True)
    if args.database != "both":
        if args.database == "postgres" and not PostgresServer(args.postgres_url).reachable():
            print(f"\n== PostgreSQL: not reachable at {args.postgres_url}; skipped (set BENCH_POSTGRES_URL)")
            return
        return database_child(args)
    for database in ("postgres", "sqlite"):
        subprocess.run([PYTHON, __file__, *sys.argv[1:], "--database", database], check=False)


if __name__ == "__main__":
    main()
