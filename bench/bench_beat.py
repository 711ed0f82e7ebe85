"""Beat at a busy minute: our DatabaseScheduler beside django-celery-beat's, N schedules due at once.

For each size N: N enabled schedules, all on one crontab `* * * * *` (UTC), in a scratch
PostgreSQL database cloned from a migrated template; a private Redis; beat alone, no worker.
The bench pops the `default` queue itself and timestamps every message as it arrives. Each
configuration (stock django-celery-beat, ours, ours with two beats at once) starts its beat(s)
12 s before a minute boundary (about 10 s of warm-up once Python has imported Celery and
Django) and is measured over that boundary and the next: a message received in
[boundary, boundary + 55 s) counts as that minute's. Per boundary: schedules dispatched of
expected, duplicates (more than one message for a schedule in the minute), missing, and how
long after the boundary the first, median, p99 and last message arrived; per configuration:
beat's CPU seconds from start to the first boundary and over the minute between the two
boundaries, and its peak RSS (VmHWM, per beat process). Collection stops at the second
boundary + 55 s, or earlier once every schedule has arrived for it and nothing more has come
for 30 s (longer than our beat takes to re-send a claimed run it thinks stranded). Notes under
the table: ours' run ledger afterwards (rows by status, how the beats split each minute, how
long each claim batch took from claim to published), and how busy the whole machine was in the
measured minute, since it is shared. At 10,000 schedules with two beats of ours, the goals
(all dispatched, none twice, none missing, the last within 5 s, peak RSS under 300 MB) are
printed as PASS or FAIL.

    .venv/bin/python bench/bench_beat.py [--sizes 1000 10000] [--only ours|stock]
        [--postgres-url postgres://postgres@127.0.0.1:5432/test] [--profile DIR]

--profile DIR samples each beat with py-spy (not a project dependency: `pip install py-spy`, or
name its path in PY_SPY) from 2 s before the second boundary until that minute's window ends, and
writes one collapsed-stack file per configuration and beat, plus the top frames by own and total
time, to DIR. A sampler outside the process leaves beat's own CPU figures as they are; cProfile's
tracing inside it would not.
"""

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
import redis
from beat_profile import Sampler
from postgres_server import PostgresServer

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from wiring.embedded_redis import EmbeddedRedis  # noqa: E402

PYTHON = sys.executable
TEMPLATE_DB, RUN_DB = "bench_beat_template", "bench_beat"
TASK = "scheduler.tasks.heartbeat"
STOCK_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Redis transport: queue `default` is the list `default`, plus one list per priority step.
QUEUE_KEYS = ["default"] + [f"default\x06\x16{step}" for step in (3, 6, 9)]
WINDOW = 55.0  # seconds after a boundary that count as that minute's
LEAD = 12.0  # beat starts this long before the first boundary measured
QUIET = 30.0  # stop early once the last boundary is complete and nothing came for this long
SAMPLE_EVERY = 0.5
GOAL_LAST_S, GOAL_RSS_MB = 5.0, 300


@dataclass(frozen=True)
class Config:
    scheduler: str  # "stock" or "ours"
    beats: int

    @property
    def label(self) -> str:
        name = "stock django-celery-beat" if self.scheduler == "stock" else "ours"
        return f"{name}, 2 beats" if self.beats == 2 else name


CONFIGS = [Config("stock", 1), Config("ours", 1), Config("ours", 2)]


# --- database -----------------------------------------------------------------------------------

class Database(PostgresServer):
    def url(self, name: str = RUN_DB) -> str:
        return self.database_url(name)

    def make_template(self, workdir: Path) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)",
                   f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)", f"CREATE DATABASE {TEMPLATE_DB}")
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, check=True,
                       env=child_env(self.url(TEMPLATE_DB), "", workdir), stdout=subprocess.DEVNULL)
        with psycopg.connect(self.url(TEMPLATE_DB), autocommit=True) as db:
            # Nothing but the bench's schedules: whatever a migration seeded goes, with what refers to it.
            db.execute("TRUNCATE django_celery_beat_periodictask CASCADE")

    def fresh(self, schedules: int) -> None:
        """A copy of the template with `schedules` enabled tasks, all due every minute."""
        self.admin(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)",
                   f"CREATE DATABASE {RUN_DB} TEMPLATE {TEMPLATE_DB}")
        with psycopg.connect(self.url(), autocommit=True) as db:
            crontab = db.execute(
                "INSERT INTO django_celery_beat_crontabschedule "
                "(minute, hour, day_of_week, day_of_month, month_of_year, timezone) "
                "VALUES ('*', '*', '*', '*', '*', 'UTC') RETURNING id").fetchone()[0]
            db.execute(
                "INSERT INTO django_celery_beat_periodictask (name, task, args, kwargs, enabled, total_run_count, "
                "date_changed, description, crontab_id, one_off, headers) "
                "SELECT 'bench-' || lpad(i::text, 6, '0'), %s, '[]', '{}', true, 0, now(), '', %s, false, '{}' "
                "FROM generate_series(1, %s) AS i", (TASK, crontab, schedules))
            db.execute("VACUUM ANALYZE")

    def ledger(self) -> tuple[Counter, dict, int, list[float]]:
        """Our run ledger: rows by status, {slot: [rows claimed by each beat]}, (schedule, slot) pairs held
        twice, and the seconds from claiming each batch to having published it."""
        with psycopg.connect(self.url()) as db:
            by_status = Counter(dict(db.execute(
                "SELECT status, count(*) FROM scheduler_schedulerun GROUP BY status").fetchall()))
            by_slot: dict[datetime, list[int]] = {}
            for slot, _, count in db.execute("SELECT scheduled_for, claimed_by, count(*) "
                                             "FROM scheduler_schedulerun GROUP BY 1, 2 ORDER BY 1, 2"):
                by_slot.setdefault(slot, []).append(count)
            twice = db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM scheduler_schedulerun GROUP BY schedule_id, scheduled_for "
                "HAVING count(*) > 1) AS t").fetchone()[0]
            batches = [seconds for (seconds,) in db.execute(
                "SELECT extract(epoch FROM max(sent_at) - claimed_at)::float FROM scheduler_schedulerun "
                "WHERE sent_at IS NOT NULL GROUP BY claimed_by, claimed_at")]
        return by_status, by_slot, twice, batches

    def drop(self) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)",
                   f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")


def child_env(database_url: str, redis_url: str, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), SECRET_KEY="bench-only-key-" + "x" * 40,
               LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="scheduler.settings",
               # The bench takes the messages off the queue itself, as no worker would: a run whose
               # message left the broker unstarted looks lost to beat's check and is sent again.
               # With no worker that check measures nothing, so it does not run within the bench.
               LOST_MESSAGE_CHECK_SECONDS="3600")
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


# --- the queue, drained and timestamped -------------------------------------------------------

class Drain(threading.Thread):
    """Pops every message beat publishes, noting time.time() when it came out of Redis."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(redis_url)
        self.received: list[tuple[float, bytes]] = []
        self.last_arrival = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            popped = self.client.brpop(QUEUE_KEYS, timeout=0.2)
            if popped is None:
                continue
            now = time.time()
            batch = [(now, popped[1])]
            # Whatever else is waiting was there before `now`; take it in bulk, not one by one.
            for key in QUEUE_KEYS:
                while more := self.client.rpop(key, 1000):
                    now = time.time()
                    batch.extend((now, raw) for raw in more)
            self.received.extend(batch)
            self.last_arrival = now

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


@dataclass
class Message:
    at: float
    name: str
    scheduled_for: str | None  # ours only


def parse(raw: bytes, at: float) -> Message:
    headers = json.loads(raw).get("headers") or {}
    return Message(at, headers.get("periodic_task_name") or "?", headers.get("scheduled_for"))


# --- beat processes ------------------------------------------------------------------------------

@dataclass
class Beat:
    process: subprocess.Popen
    log: Path
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (time, cpu s, rss bytes)
    peak_rss: int = 0  # VmHWM, read before it is stopped

    def sample(self) -> None:
        try:
            root = psutil.Process(self.process.pid)
            cpu, rss = 0.0, 0
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
            self.samples.append((time.time(), cpu, rss))
        except psutil.Error:
            pass

    def cpu_at(self, moment: float) -> float:
        before = [cpu for at, cpu, _ in self.samples if at <= moment]
        return before[-1] if before else 0.0

    def read_peak(self) -> None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
            self.peak_rss = int(peak.split()[1]) * 1024
        except (OSError, StopIteration):
            self.peak_rss = max((rss for _, _, rss in self.samples), default=0)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_lines(self) -> list[str]:
        """What beat logged after its start-up banner (at WARNING and above, tracebacks included)."""
        lines = self.log.read_text(errors="replace").splitlines()
        banner_end = max((i for i, line in enumerate(lines) if ". maxinterval ->" in line), default=-1)
        return [line for line in lines[banner_end + 1:] if line.strip()]


def start_beat(config: Config, index: int, env: dict, workdir: Path) -> Beat:
    home = workdir / f"beat-{config.scheduler}-{config.beats}-{index}"
    home.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, "-m", "celery", "-A", "scheduler", "beat", "--loglevel", "WARNING",
            "--pidfile", str(home / "beat.pid"), "--schedule", str(home / "celerybeat-schedule")]
    if config.scheduler == "stock":
        argv += ["-S", STOCK_SCHEDULER]
    log = home / "beat.log"
    with log.open("w") as output:
        process = subprocess.Popen(argv, cwd=PROJECT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Beat(process, log)


# --- one configuration ---------------------------------------------------------------------------

@dataclass
class Minute:
    boundary: float
    dispatched: int
    duplicates: int
    missing: int
    lateness: list[float]  # seconds after the boundary, every message of the minute, sorted

    def late(self, q: str) -> float | None:
        if not self.lateness:
            return None
        return {"first": self.lateness[0], "median": statistics.median(self.lateness),
                "p99": self.lateness[min(len(self.lateness) - 1, int(len(self.lateness) * 0.99))],
                "last": self.lateness[-1]}[q]


@dataclass
class Result:
    config: Config
    size: int
    minutes: list[Minute]
    cpu_start: float
    cpu_minute: float
    peak_rss_mb: float
    outside: int = 0
    slot_duplicates: int = 0  # ours: messages for a (schedule, scheduled_for) already seen
    notes: list[str] = field(default_factory=list)


def machine_busy() -> tuple[float, float]:
    """(now, CPU seconds the whole machine has spent busy so far): the other engineers' tests count too."""
    times = psutil.cpu_times()
    return time.time(), sum(times) - times.idle - getattr(times, "iowait", 0.0)


def busy_between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    def at(moment: float) -> float:
        return next((busy for when, busy in reversed(samples) if when <= moment), samples[0][1])
    return at(end) - at(start)


def next_boundary(lead: float) -> float:
    return math.ceil((time.time() + lead) / 60) * 60


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 1))


def minute_of(messages: list[Message], boundary: float, size: int) -> Minute:
    inside = [m for m in messages if boundary <= m.at < boundary + WINDOW]
    names = Counter(m.name for m in inside)
    return Minute(boundary, dispatched=len(names), duplicates=sum(c - 1 for c in names.values()),
                  missing=size - len(names), lateness=sorted(m.at - boundary for m in inside))


def measure(config: Config, size: int, database: Database, redis_url: str, workdir: Path,
            profile: Path | None = None) -> Result:
    database.fresh(size)
    redis.Redis.from_url(redis_url).flushall()
    env = child_env(database.url(), redis_url, workdir)
    first = next_boundary(LEAD + 1)
    boundaries = [first, first + 60]
    sleep_until(first - LEAD)
    drain = Drain(redis_url)
    drain.start()
    beats = [start_beat(config, i, env, workdir) for i in range(config.beats)]
    messages: list[Message] = []
    notes = []
    machine = [machine_busy()]
    samplers = []
    try:
        last = boundaries[-1]
        while time.time() < last + WINDOW:
            if profile and not samplers and time.time() >= last - 2:
                stem = f"{config.scheduler}-{config.beats}beats-{size}"
                samplers = [Sampler(beat.process.pid, profile / f"{stem}-{i + 1}") for i, beat in enumerate(beats)]
            for beat in beats:
                beat.sample()
            machine.append(machine_busy())
            received = drain.received
            messages.extend(parse(raw, at) for at, raw in received[len(messages):])
            now = time.time()
            if now > last and now - drain.last_arrival >= QUIET and minute_of(messages, last, size).missing == 0:
                break
            if all(beat.process.poll() is not None for beat in beats):
                notes.append("every beat exited before the end")
                break
            time.sleep(SAMPLE_EVERY)
        for beat in beats:
            beat.sample()
            beat.read_peak()
    finally:
        for sampler in samplers:
            sampler.stop()
        for beat in beats:
            beat.stop()
        drain.stop()
    messages.extend(parse(raw, at) for at, raw in drain.received[len(messages):])

    minutes = [minute_of(messages, boundary, size) for boundary in boundaries]
    outside = sum(1 for m in messages if not any(b <= m.at < b + WINDOW for b in boundaries))
    slots = Counter((m.name, m.scheduled_for) for m in messages if m.scheduled_for)
    result = Result(
        config, size, minutes,
        cpu_start=sum(beat.cpu_at(boundaries[0]) for beat in beats),
        cpu_minute=sum(beat.cpu_at(boundaries[1]) - beat.cpu_at(boundaries[0]) for beat in beats),
        peak_rss_mb=max(beat.peak_rss for beat in beats) / 2**20,
        outside=outside, slot_duplicates=sum(c - 1 for c in slots.values()), notes=notes,
    )
    result.notes.append(
        f"machine: {busy_between(machine, *boundaries):.1f} of {60 * psutil.cpu_count():.0f} CPU seconds busy in the "
        f"minute between the two boundaries (beat {result.cpu_minute:.1f}; the rest is PostgreSQL, Redis, the bench's "
        "drain and anything else running)")
    if config.scheduler == "ours":
        by_status, by_slot, twice, batches = database.ledger()
        split = "; ".join(f"{slot:%H:%M} " + " + ".join(str(count) for count in counts)
                          for slot, counts in by_slot.items())
        result.notes.append("ledger: " + ", ".join(f"{status} {count}" for status, count in sorted(by_status.items()))
                            + (f"; claimed per beat: {split}" if config.beats > 1 else "")
                            + (f"; {twice} (schedule, slot) pairs held twice" if twice else ""))
        if batches:
            result.notes.append(f"{len(batches)} claim batches (at most 500 runs each), claim to published: median "
                                f"{statistics.median(batches):.2f} s, max {max(batches):.2f} s")
    for index, beat in enumerate(beats):
        code = beat.process.returncode
        # -15 / 0: stopped by the bench; anything else, or log lines at WARNING and above, is news.
        logged = beat.log_lines()
        if logged:
            result.notes.append(f"beat {index + 1} logged {len(logged)} line(s); the last ones:")
            result.notes.extend("    " + line[:220] for line in logged[-6:])
        if code not in (0, -signal.SIGTERM, -signal.SIGKILL):
            result.notes.append(f"beat {index + 1} exited with status {code}")
    return result


# --- report ----------------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def clock(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M")


def worst_last(result: Result) -> tuple[float, bool]:
    """The later last message of the two boundaries; True when some schedule never came (a bound)."""
    incomplete = any(m.missing for m in result.minutes)
    last = max((m.late("last") or 0.0) for m in result.minutes)
    return (WINDOW if incomplete else last), incomplete


def report(size: int, results: list[Result]) -> None:
    print(f"\n== {size:,} schedules due every minute, PostgreSQL, one Redis, no worker")
    header = (f"{'':28}{'minute':>7}{'dispatched':>13}{'dup':>6}{'missing':>8}{'first s':>9}{'median s':>10}"
              f"{'p99 s':>8}{'last s':>8}{'CPU s start':>13}{'CPU s/min':>11}{'peak RSS MB':>13}")
    print(header)
    for r in results:
        for i, m in enumerate(r.minutes):
            per_config = (f"{r.cpu_start:>13.1f}{r.cpu_minute:>11.1f}{r.peak_rss_mb:>13.0f}" if i == 0 else "")
            print(f"{r.config.label if i == 0 else '':28}{clock(m.boundary):>7}{f'{m.dispatched}/{size}':>13}"
                  f"{m.duplicates:>6}{m.missing:>8}{fmt(m.late('first')):>9}{fmt(m.late('median')):>10}"
                  f"{fmt(m.late('p99')):>8}{fmt(m.late('last')):>8}{per_config}")
    stock = next((r for r in results if r.config.scheduler == "stock"), None)
    if stock:
        stock_last, stock_incomplete = worst_last(stock)
        for r in results:
            if r is stock:
                continue
            ours_last, _ = worst_last(r)
            bound = "<= " if stock_incomplete else ""
            print(f"ratio {r.config.label} / stock: last message {bound}{ours_last / stock_last:.3f}x"
                  f"{' (stock never sent them all; its 55 s is a floor)' if stock_incomplete else ''}, "
                  f"CPU per minute {r.cpu_minute / max(stock.cpu_minute, 1e-9):.2f}x, "
                  f"CPU to start {r.cpu_start / max(stock.cpu_start, 1e-9):.2f}x, "
                  f"peak RSS {r.peak_rss_mb / stock.peak_rss_mb:.2f}x")
    for r in results:
        extra = []
        if r.outside:
            extra.append(f"{r.outside} message(s) outside both minutes' windows")
        if r.slot_duplicates:
            extra.append(f"{r.slot_duplicates} message(s) repeat a (schedule, scheduled_for) already sent")
        for line in extra + r.notes:
            print(f"  {r.config.label}: {line}")


def goals(results: list[Result]) -> None:
    target = next((r for r in results if r.config == Config("ours", 2) and r.size == 10_000), None)
    if target is None:
        return
    worst = {
        "dispatched": min(m.dispatched for m in target.minutes),
        "duplicates": max(m.duplicates for m in target.minutes) + target.slot_duplicates,
        "missing": max(m.missing for m in target.minutes),
        "last": worst_last(target)[0],
    }
    checks = [
        ("all 10,000 dispatched every minute", worst["dispatched"] == 10_000, f"worst minute {worst['dispatched']:,}"),
        ("0 duplicates", worst["duplicates"] == 0, f"{worst['duplicates']}"),
        ("0 missing", worst["missing"] == 0, f"{worst['missing']}"),
        (f"last message within {GOAL_LAST_S:.0f} s of the boundary", worst["last"] < GOAL_LAST_S,
         f"{worst['last']:.2f} s"),
        (f"peak RSS under {GOAL_RSS_MB} MB (per beat)", target.peak_rss_mb < GOAL_RSS_MB,
         f"{target.peak_rss_mb:.0f} MB"),
    ]
    print("\n== Goals, ours with two beats at 10,000 schedules (worse of the two minutes)")
    for goal, passed, figure in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {goal}: {figure}")


def code_version() -> str:
    """The commit measured, and whether the scheduler's files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line.split(maxsplit=1)[1] for line in git("status", "--porcelain", "--", "scheduler").splitlines()]
    return f"commit {commit}" + (f", uncommitted changes in {', '.join(dirty)}" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--only", choices=["ours", "stock"], help="run one scheduler's configurations only")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--profile", type=Path, help="sample each beat with py-spy over the second minute, into DIR")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    database = Database(args.postgres_url)
    if not database.reachable():
        print(f"\n== PostgreSQL: not reachable at {args.postgres_url}; skipped (set BENCH_POSTGRES_URL)")
        return
    configs = [c for c in CONFIGS if args.only in (None, c.scheduler)]
    everything = []
    print(f"beat bench: {code_version()}; {psutil.cpu_count()} CPUs; started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    with tempfile.TemporaryDirectory(prefix="bench-beat-") as tmp, EmbeddedRedis(Path(tmp) / "redis") as broker:
        workdir = Path(tmp)
        database.make_template(workdir)
        try:
            for size in args.sizes:
                results = []
                for config in configs:
                    print(f"-- {config.label}, {size:,} schedules ...", file=sys.stderr, flush=True)
                    results.append(measure(config, size, database, broker.url, workdir, args.profile))
                report(size, results)
                everything.extend(results)
        finally:
            database.drop()
    goals(everything)


if __name__ == "__main__":
    main()
