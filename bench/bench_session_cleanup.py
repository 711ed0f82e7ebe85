"""Expired-session cleanup under live traffic: our batched engine beside Django's clearsessions.

For each database: load N expired and M live sessions once (see SPREAD), each holding what a
site's visitor's session holds (160-240 bytes, bench/session_data.py), then for each contender
start from an identical copy, run a probe (bench/session_probe.py) that reads, updates and creates sessions
every 20 ms, run the cleanup as a separate process, and report wall time, the cleanup's peak
RSS, the probe's p99 and max latency and errors, expired rows left and live rows lost. On
PostgreSQL both run again under statement_timeout=500ms (a long single statement is cancelled),
and ours under 250ms.

    .venv/bin/python bench/bench_session_cleanup.py [--databases sqlite,postgres]
        [--expired 1000000] [--live 200000] [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from postgres_server import PostgresServer
from session_data import session_data_pool

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CONTENDERS = {
    "stock clearsessions": ["manage.py", "clearsessions"],
    "ours (cleanup sessions)": ["manage.py", "cleanup", "sessions"],
}
TEMPLATE_DB, RUN_DB = "bench_cleanup_template", "bench_cleanup_run"
# As on a real site: sessions are written as people log in, so expiry times are spread out and
# rise with the order rows were written in; expired ones over the last two weeks, live ones
# over the next two (the default SESSION_COOKIE_AGE). Keys are random, as Django makes them.
SPREAD = timedelta(days=14)
# Distinct session data to fill the rows from (bench/session_data.py), each used in turn.
POOL_SIZE = 20_000
SECRET_KEY = "bench-only-key-" + "x" * 40


def session_pool() -> list[str]:
    return session_data_pool(POOL_SIZE, secret_key=SECRET_KEY)


def child_env(database_url: str, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), SECRET_KEY=SECRET_KEY,
               LOG_LEVEL="ERROR", DJANGO_SETTINGS_MODULE="scheduler.settings")
    return env


def manage(database_url: str, data_dir: Path, *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=PROJECT, env=child_env(database_url, data_dir), check=True,
                   stdout=subprocess.DEVNULL)


class SQLiteDatabase:
    name = "SQLite"

    def __init__(self, workdir: Path) -> None:
        self.template = workdir / "template.sqlite3"
        self.run_file = workdir / "run.sqlite3"

    def url(self, template: bool = False) -> str:
        return f"sqlite:///{self.template if template else self.run_file}"

    def load(self, expired: int, live: int, workdir: Path) -> None:
        manage(self.url(template=True), workdir, "migrate", "-v", "0")
        now = datetime.now(UTC)
        with sqlite3.connect(self.template) as db:
            db.execute("CREATE TEMP TABLE pool (i INTEGER PRIMARY KEY, data TEXT)")
            db.executemany("INSERT INTO pool VALUES (?, ?)", enumerate(session_pool()))
            for count, start in ((expired, now - SPREAD), (live, now + timedelta(minutes=10))):
                # Django's own text form of a datetime on SQLite: six digits of microseconds,
                # none at all when they are zero.
                db.execute(
                    "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?), "
                    "at(i, e) AS (SELECT i, ? + i * ? FROM seq) "
                    "INSERT INTO django_session SELECT lower(hex(randomblob(16))), pool.data, "
                    "strftime('%Y-%m-%d %H:%M:%S', e, 'unixepoch') || CASE WHEN e = floor(e) THEN '' "
                    "ELSE printf('.%06d', (e - floor(e)) * 1000000) END FROM at JOIN pool ON pool.i = at.i % ?",
                    (count, start.timestamp(), (SPREAD.total_seconds() - 1200) / count, POOL_SIZE),
                )
        with sqlite3.connect(self.template) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def fresh_copy(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.run_file}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.template, self.run_file)
        # The copy on disk before the contender starts: left to the kernel, the copy's 470 MB
        # (and what the last contender left) would be written back during the next run, which
        # then pays for the bench's own setup; for ours, at its first sync of the file.
        os.sync()

    def wal_mb(self) -> float:
        wal = Path(f"{self.run_file}-wal")
        return wal.stat().st_size / 1e6 if wal.exists() else 0.0

    def count(self, sql: str) -> int:
        with sqlite3.connect(self.run_file) as db:
            return db.execute(sql.replace("now()", "strftime('%Y-%m-%d %H:%M:%f', 'now')")).fetchone()[0]


class PostgresDatabase(PostgresServer):
    name = "PostgreSQL"

    def url(self, template: bool = False, options: str = "") -> str:
        base = self.database_url(TEMPLATE_DB if template else RUN_DB)
        return base + (f"?options={options}" if options else "")

    def load(self, expired: int, live: int, workdir: Path) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {RUN_DB}", f"DROP DATABASE IF EXISTS {TEMPLATE_DB}",
                   f"CREATE DATABASE {TEMPLATE_DB}")
        manage(self.url(template=True), workdir, "migrate", "-v", "0")
        with psycopg.connect(self.url(template=True), autocommit=True) as db:
            db.execute("CREATE TEMP TABLE pool AS SELECT i - 1 AS i, data FROM unnest(%s::text[]) "
                       "WITH ORDINALITY AS p(data, i)", (session_pool(),))
            for count, start in ((expired, -SPREAD), (live, timedelta(minutes=10))):
                db.execute(
                    "INSERT INTO django_session SELECT md5(random()::text || g.i::text), pool.data, "
                    "now() + %s + g.i * %s FROM generate_series(1, %s) AS g(i) JOIN pool ON pool.i = g.i %% %s",
                    (start, (SPREAD - timedelta(minutes=20)) / count, count, POOL_SIZE),
                )
            db.execute("VACUUM ANALYZE django_session")

    def fresh_copy(self) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {RUN_DB}", f"CREATE DATABASE {RUN_DB} TEMPLATE {TEMPLATE_DB}")

    def count(self, sql: str) -> int:
        with psycopg.connect(self.url()) as db:
            return db.execute(sql).fetchone()[0]


def run_cleanup(argv: list[str], env: dict, log: Path) -> dict:
    started = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen([PYTHON, *argv], cwd=PROJECT, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    return {"wall": time.perf_counter() - started, "rss_mb": usage.ru_maxrss / 1024,
            "exit": os.waitstatus_to_exitcode(status), "log": log.read_text()}


def measure(database, argv: list[str], live: int, workdir: Path) -> dict:
    database.fresh_copy()
    env = child_env(database.url(), workdir)
    figures_path, ready = workdir / "probe.json", workdir / "probe.ready"
    ready.unlink(missing_ok=True)
    probe = subprocess.Popen([PYTHON, "bench/session_probe.py", str(figures_path), str(ready)], cwd=PROJECT, env=env)
    while not ready.exists():
        time.sleep(0.05)
    time.sleep(1)  # a second of undisturbed traffic first
    result = run_cleanup(argv, env, workdir / "cleanup.log")
    time.sleep(1)
    if hasattr(database, "wal_mb"):
        result["wal_mb"] = database.wal_mb()  # what the run leaves on disk beside the database
    probe.terminate()
    probe.wait()
    probe_figures = json.loads(figures_path.read_text())
    latencies = sorted(probe_figures["latencies"])
    result.update(
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000, max_ms=latencies[-1] * 1000,
        median_ms=statistics.median(latencies) * 1000, probe_ops=len(latencies), errors=probe_figures["errors"],
        expired_left=database.count("SELECT count(*) FROM django_session WHERE expire_date < now()"),
        live_lost=live + probe_figures["created"]
        - database.count("SELECT count(*) FROM django_session WHERE expire_date >= now()"),
    )
    return result


def under_statement_timeout(database: PostgresDatabase, argv: list[str], workdir: Path, ms: int) -> str:
    database.fresh_copy()
    env = child_env(database.url(options=f"-c%20statement_timeout%3D{ms}"), workdir)
    result = run_cleanup(argv, env, workdir / "timeout.log")
    left = database.count("SELECT count(*) FROM django_session WHERE expire_date < now()")
    if result["exit"] == 0 and left == 0:
        return f"completed in {result['wall']:.1f} s, 0 expired left"
    cancelled = "statement timeout" in result["log"]
    return (f"exit {result['exit']}{' (statement cancelled: timeout)' if cancelled else ''}, "
            f"{left} expired rows left")


def report(database_name: str, expired: int, live: int, results: dict) -> None:
    print(f"\n== {database_name}: {expired:,} expired + {live:,} live sessions")
    print(f"{'':26}{'wall s':>8}{'peak RSS MB':>13}{'probe p99 ms':>14}{'probe max ms':>14}"
          f"{'probe errors':>14}{'expired left':>14}{'live lost':>11}")
    for name, r in results.items():
        print(f"{name:26}{r['wall']:>8.2f}{r['rss_mb']:>13.0f}{r['p99_ms']:>14.1f}{r['max_ms']:>14.1f}"
              f"{len(r['errors']):>14}{r['expired_left']:>14}{r['live_lost']:>11}")
    stock, ours = results.values()
    print(f"ratio ours/stock: wall {ours['wall'] / stock['wall']:.2f}x, probe max latency "
          f"{ours['max_ms'] / stock['max_ms']:.2f}x, peak RSS {ours['rss_mb'] / stock['rss_mb']:.2f}x")
    if "wal_mb" in ours:
        print(f"WAL file left on disk a second after the run: stock {stock['wal_mb']:.0f} MB, "
              f"ours {ours['wal_mb']:.0f} MB")
    for name, r in results.items():
        for error in sorted(set(r["errors"]))[:3]:
            print(f"  {name} probe error: {error}")
        if r["exit"] != 0:
            print(f"  {name} exited {r['exit']}: {r['log'].strip().splitlines()[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=200_000)
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cleanup-") as tmp:
        workdir = Path(tmp)
        for kind in args.databases.split(","):
            database = SQLiteDatabase(workdir) if kind == "sqlite" else PostgresDatabase(args.postgres_url)
            if kind == "postgres" and not database.reachable():
                print(f"\n== PostgreSQL: not reachable at {args.postgres_url}; skipped (set BENCH_POSTGRES_URL)")
                continue
            database.load(args.expired, args.live, workdir)
            results = {name: measure(database, argv, args.live, workdir) for name, argv in CONTENDERS.items()}
            report(database.name, args.expired, args.live, results)
            if kind == "postgres":
                for name, argv in CONTENDERS.items():
                    print(f"statement_timeout=500ms, {name}: {under_statement_timeout(database, argv, workdir, 500)}")
                # Ours again with half of that: no statement of ours takes 250 ms.
                ours = CONTENDERS["ours (cleanup sessions)"]
                print(f"statement_timeout=250ms, ours: {under_statement_timeout(database, ours, workdir, 250)}")
                database.admin(f"DROP DATABASE IF EXISTS {RUN_DB}", f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")


if __name__ == "__main__":
    main()
