"""A report over 1,000,000 orders in PostgreSQL: our build and render beside its queries alone.

A scratch database holds `orders(id, created_at, region, amount)`, N rows made with
generate_series (a year of orders over eight regions). The report has three SQL sections on it,
each a GROUP BY over every row: revenue per day (line chart, 365 rows), revenue per region (bar
chart) and orders per region and month (table, 96 rows). A child process, started fresh so its
peak RSS is the render's own, times `report_render` (every section built: read-only
transaction, statement timeout, charts, CSVs, HTML with inlined CSS; nothing stored or sent)
and, interleaved with it in the same run, the same three queries alone on a bare SQLAlchemy
connection (opened once, rows fetched, nothing else). After one untimed warm-up of each, the
medians of the repetitions are compared as a ratio; the part of our time spent in the queries
and in drawing the charts is shown too. Goals, printed as PASS or FAIL: ratio at most 1.3, peak
RSS under 250 MB, HTML under 100 KB.

    .venv/bin/python bench/bench_reports.py [--rows 1000000] [--repetitions 7]
        [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
"""

import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from postgres_server import PostgresServer, ReaderRole
from report_process import PROJECT, bench_arguments, child_env, measure_in_child

SOURCE_DB = "bench_reports_orders"
READER = "bench_reports_reader"
SOURCE_NAME = "orders"
GOAL_RATIO, GOAL_RSS_MB, GOAL_HTML_BYTES = 1.3, 250, 100_000

SECTIONS = [
    {
        "name": "Revenue per day", "chart": "line", "chart_x": "day", "chart_y": "revenue",
        "query": "SELECT created_at::date AS day, count(*) AS orders, sum(amount) AS revenue\n"
                 "FROM orders GROUP BY 1 ORDER BY 1",
    },
    {
        "name": "Revenue per region", "chart": "bar", "chart_x": "region", "chart_y": "revenue",
        "query": "SELECT region, count(*) AS orders, sum(amount) AS revenue, round(avg(amount), 2) AS average\n"
                 "FROM orders GROUP BY region ORDER BY revenue DESC",
    },
    {
        "name": "Orders per region and month", "chart": "none", "chart_x": "", "chart_y": "",
        "query": "SELECT region, to_char(created_at, 'YYYY-MM') AS month, count(*) AS orders,\n"
                 "       sum(amount) AS revenue, max(amount) AS largest\n"
                 "FROM orders GROUP BY 1, 2 ORDER BY 1, 2",
    },
]


class OrdersDatabase(PostgresServer):
    def __init__(self, server_url: str) -> None:
        super().__init__(server_url)
        self.url = self.database_url(SOURCE_DB)

    def load(self, rows: int) -> str:
        self.admin(f"DROP DATABASE IF EXISTS {SOURCE_DB}", f"CREATE DATABASE {SOURCE_DB}")
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, created_at timestamp NOT NULL, "
                       "region text NOT NULL, amount numeric(10, 2) NOT NULL)")
            # The same data every run: a fixed seed, orders evenly over 2025, amounts 1-500.
            db.execute("SELECT setseed(0.5)")
            db.execute(
                "INSERT INTO orders SELECT i, timestamp '2025-01-01' + (i - 1) * (interval '365 days' / %s), "
                "(ARRAY['north', 'south', 'east', 'west', 'central', 'islands', 'mountains', 'coast'])"
                "[1 + floor(random() * 8)::int], round((1 + random() * 499)::numeric, 2) "
                "FROM generate_series(1, %s) AS i",
                (rows, rows),
            )
            db.execute("VACUUM ANALYZE orders")
            return db.execute("SELECT version()").fetchone()[0].split(" on ")[0]

    def drop(self) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {SOURCE_DB}")


def measure(workdir: Path, source_url: str, repetitions: int) -> dict:
    # The sections read the scratch PostgreSQL database through their named data source.
    env = child_env(workdir, REPORT_SOURCE_ORDERS_URL=source_url)
    return measure_in_child(__file__, workdir, env, "--repetitions", str(repetitions))


# --- the child: Django set up, the report defined, both contenders timed ------------------------

def child_main(figures_path: Path, repetitions: int) -> None:
    sys.path.insert(0, str(PROJECT))
    import django

    django.setup()
    from sqlalchemy import create_engine

    from reports import sections as report_sections
    from reports.models import Report, ReportSection
    from reports.services import report_render
    from reports.sources import data_source_url

    report = Report.objects.create(name="Orders", recipients="ops@example.com", timezone="UTC")
    for position, section in enumerate(SECTIONS, start=1):
        ReportSection.objects.create(report=report, position=position, kind=ReportSection.Kind.SQL,
                                     data_source=SOURCE_NAME, timeout_seconds=120, **section)
    spent = timed_calls(report_sections, ("query_run", "chart_png"))
    # Pooled and opened once: the baseline pays for no connection, only for the queries.
    bare_engine = create_engine(data_source_url(SOURCE_NAME))
    queries = [section["query"] for section in SECTIONS]

    def ours() -> object:
        return report_render(report=report, slot=datetime(2026, 1, 1, 7, 0, tzinfo=UTC))

    def bare() -> list:
        with bare_engine.connect() as connection:
            return [connection.exec_driver_sql(query).fetchall() for query in queries]

    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rendered = ours()
    bare()
    times = {"ours": [], "bare": [], "ours_queries": [], "ours_charts": [], "ours_rest": []}
    for repetition in range(repetitions):
        # Alternate which goes first, so a drift in the machine's load hits both alike.
        order = (("ours", ours), ("bare", bare)) if repetition % 2 == 0 else (("bare", bare), ("ours", ours))
        for name, contender in order:
            for key in spent:
                spent[key] = 0.0
            started = time.perf_counter()
            result = contender()
            times[name].append(time.perf_counter() - started)
            if name == "ours":
                rendered = result
                times["ours_queries"].append(spent["query_run"])
                times["ours_charts"].append(spent["chart_png"])
                times["ours_rest"].append(times["ours"][-1] - spent["query_run"] - spent["chart_png"])
    assert not rendered.failed_sections, rendered.error
    files = [{"kind": file.kind, "name": file.filename, "bytes": len(file.content)} for file in rendered.files]
    figures_path.write_text(json.dumps({
        "times": times, "rss_before_mb": rss_before_mb, "html_bytes": len(rendered.html.encode()),
        "text_bytes": len(rendered.text.encode()), "files": files,
    }))


def timed_calls(module, names: tuple[str, ...]) -> dict:
    """Wrap module.<name> for each name so the time spent in it is added up in the returned dict."""
    spent = dict.fromkeys(names, 0.0)
    for name in names:
        original = getattr(module, name)

        def timed(*args, _name=name, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - started

        setattr(module, name, timed)
    return spent


# --- the report -------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(server: str, rows: int, repetitions: int, figures: dict) -> None:
    times = figures["times"]
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n== {server}: a report of {len(SECTIONS)} SQL sections (2 charts) over {rows:,} orders, "
          f"{repetitions} repetitions, medians")
    print(f"{'':44}{'median s':>10}{'min s':>9}{'max s':>9}")
    for name, label in (("bare", "bare SQLAlchemy connection, queries only"), ("ours", "ours, report_render")):
        print(f"{label:44}{median[name]:>10.3f}{min(times[name]):>9.3f}{max(times[name]):>9.3f}")
    ratio = median["ours"] / median["bare"]
    print(f"ratio ours/bare: {ratio:.2f}x")
    print(f"  ours, median split: queries (read-only transaction, pooled connection) {median['ours_queries']:.3f} s, "
          f"charts {median['ours_charts']:.3f} s, the rest (CSV, HTML, CSS inlining) {median['ours_rest']:.3f} s")
    peak, before = figures["peak_rss_mb"], figures["rss_before_mb"]
    print(f"peak RSS of the rendering process: {peak:.0f} MB ({before:.0f} MB after imports and set-up, "
          "before the first render)")
    html = figures["html_bytes"]
    print(f"HTML {html / 1000:.1f} KB, text {figures['text_bytes'] / 1000:.1f} KB; files: "
          + ", ".join(f"{file['name']} {file['bytes'] / 1000:.1f} KB" for file in figures["files"]))
    print(f"goals: ratio <= {GOAL_RATIO} {verdict(ratio <= GOAL_RATIO)}, peak RSS < {GOAL_RSS_MB} MB "
          f"{verdict(peak < GOAL_RSS_MB)}, HTML < {GOAL_HTML_BYTES // 1000} KB {verdict(html < GOAL_HTML_BYTES)}")


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.repetitions)
        return
    database = OrdersDatabase(args.postgres_url)
    if not database.reachable():
        print(f"\n== PostgreSQL: not reachable at {args.postgres_url}; skipped (set BENCH_POSTGRES_URL)")
        return
    reader = ReaderRole(args.postgres_url, READER)
    try:
        server = database.load(args.rows)
        # Reports refuse to run SQL as a superuser: the sections read as a role that may only read.
        source_url = reader.create(database=SOURCE_DB, tables=("orders",))
        with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
            figures = measure(Path(tmp), source_url, args.repetitions)
    finally:
        database.drop()
        reader.drop()
    report(server, args.rows, args.repetitions, figures)


if __name__ == "__main__":
    main()
