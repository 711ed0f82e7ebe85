"""Peak memory of building a report whose SQL section returns huge values: ours, with the byte
limits, beside the same build with the limits lifted (the path before them).

The section selects ROWS rows of VALUE_MB each (`repeat('x', ...)` over generate_series on
PostgreSQL, a recursive CTE over `hex(zeroblob(...))` on SQLite). Each contender is a fresh
child process that sets Django up, stores the report and runs `report_render` once (every
section built, CSV, HTML with inlined CSS; nothing stored or sent); its peak RSS comes from
wait4. "Uncapped" is our code with REPORT_CELL_BYTES and REPORT_SECTION_BYTES set past any
result, so it holds every value whole, as the build did before the limits. Goal, printed as PASS
or FAIL: ours under 250 MB at the default 100 rows of 5 MB (the uncapped build took 1 GB in the
issue). PostgreSQL is read through a role of its own with no rights past reading, as reports
must be; it is skipped when the server does not answer.

    .venv/bin/python bench/bench_report_memory.py [--rows 100] [--value-mb 5]
        [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from postgres_server import ReaderRole
from report_process import PROJECT, bench_arguments, child_env, measure_in_child

GOAL_RSS_MB = 250
READER = "bench_report_memory_reader"
# Values past any result: the limits never cut.
UNCAPPED = {"REPORT_CELL_BYTES": str(10**15), "REPORT_SECTION_BYTES": str(10**15)}


def section_query(vendor: str, rows: int, value_bytes: int) -> str:
    if vendor == "postgresql":
        return f"SELECT n, repeat('x', {value_bytes}) AS payload FROM generate_series(1, {rows}) AS n"
    return (f"WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < {rows}) "
            f"SELECT n, hex(zeroblob({value_bytes // 2})) AS payload FROM numbers")


def child_main(figures_path: Path, query: str) -> None:
    import resource

    sys.path.insert(0, str(PROJECT))
    import django

    django.setup()
    from reports.models import Report, ReportSection
    from reports.services import report_render

    report = Report.objects.create(name="Payloads", recipients="ops@example.com", timezone="UTC")
    ReportSection.objects.create(report=report, position=1, kind=ReportSection.Kind.SQL, name="Payloads",
                                 data_source="big", query=query, timeout_seconds=300)
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    rendered = report_render(report=report, slot=datetime(2026, 1, 1, 7, 0, tzinfo=UTC))
    seconds = time.perf_counter() - started
    assert not rendered.failed_sections, rendered.error
    figures_path.write_text(json.dumps({
        "seconds": seconds, "rss_before_mb": rss_before_mb, "html_bytes": len(rendered.html.encode()),
        "csv_bytes": sum(len(file.content) for file in rendered.files if file.kind == "csv"),
    }))


def sqlite_source(workdir: Path) -> str:
    # Any SQLite file will do: the query reads no table.
    path = workdir / "source.sqlite3"
    import sqlite3

    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


def measure(server: str, source_url: str, query: str, rows: int, value_mb: float) -> None:
    figures = {}
    for name, limits in (("ours", {}), ("uncapped", UNCAPPED)):
        with tempfile.TemporaryDirectory(prefix="bench-report-memory-") as tmp:
            url = source_url or sqlite_source(Path(tmp))
            env = child_env(Path(tmp), REPORT_SOURCE_BIG_URL=url, **limits)
            figures[name] = measure_in_child(__file__, Path(tmp), env, "--query", query)
    print(f"\n== {server}: one SQL section of {rows} rows x {value_mb:g} MB ({rows * value_mb:,.0f} MB read)")
    print(f"{'':12}{'peak RSS MB':>13}{'after set-up MB':>17}{'build s':>9}{'CSV MB':>9}{'HTML KB':>9}")
    for name, figure in figures.items():
        print(f"{name:12}{figure['peak_rss_mb']:>13.0f}{figure['rss_before_mb']:>17.0f}{figure['seconds']:>9.2f}"
              f"{figure['csv_bytes'] / 1e6:>9.1f}{figure['html_bytes'] / 1e3:>9.1f}")
    ours, uncapped = figures["ours"]["peak_rss_mb"], figures["uncapped"]["peak_rss_mb"]
    print(f"ratio ours/uncapped peak RSS: {ours / uncapped:.2f}x; "
          f"goal: ours under {GOAL_RSS_MB} MB {'PASS' if ours < GOAL_RSS_MB else 'FAIL'}")


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--value-mb", type=float, default=5)
    parser.add_argument("--query", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.query)
        return
    value_bytes = int(args.value_mb * 1_000_000)
    measure("SQLite", "", section_query("sqlite", args.rows, value_bytes), args.rows, args.value_mb)
    role = ReaderRole(args.postgres_url, READER)
    if not role.reachable():
        print(f"\n== PostgreSQL: not reachable at {args.postgres_url}; skipped (set BENCH_POSTGRES_URL)")
        return
    try:
        measure("PostgreSQL", role.create(), section_query("postgresql", args.rows, value_bytes),
                args.rows, args.value_mb)
    finally:
        role.drop()


if __name__ == "__main__":
    main()
