"""What a report's SQL may not reach: the site's secrets, SQLite functions that reach outside the
query, a PostgreSQL role with rights past a read-only transaction, and more time than its timeout."""

import logging
import sqlite3
import time
import uuid

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from sqlalchemy import URL

from reports import sources
from reports.models import ReportSection
from reports.sections import CoveredPeriod, section_build
from reports.sources import QueryRefused, QueryTimedOut, query_run
from reports.worker_start import data_sources_check_at_start

pytestmark = pytest.mark.django_db(transaction=True)

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's roles")


def run(query: str, **options):
    return query_run(source=options.pop("source", "default"), query=query,
                     timeout_seconds=options.pop("timeout_seconds", 10), row_limit=options.pop("row_limit", 100))


def sqlite_source(monkeypatch, path, name: str = "warehouse") -> str:
    """A named SQLite data source with a table of sales, at `path` (its URL written as a user would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as warehouse:
        warehouse.execute("CREATE TABLE sales (region TEXT, total INTEGER)")
        warehouse.execute("INSERT INTO sales VALUES ('north', 7), ('south', 3)")
    monkeypatch.setenv(f"REPORT_SOURCE_{name.upper()}_URL", URL.create("sqlite", database=str(path)).render_as_string())
    return name


# The site's own secrets, on either database: SQLite's authoriser or the reader role's grants.

def test_a_report_cannot_read_the_session_table():
    session = SessionStore()
    session["_auth_user_id"] = "1"
    session.create()
    for query in ("SELECT session_key FROM django_session", "SELECT count(*) FROM django_session"):
        with pytest.raises(QueryRefused, match="django_session"):
            run(query)


def test_a_report_reads_user_names_but_never_password_hashes():
    User.objects.create_user("reader", "reader@example.com", "a-password")
    assert run("SELECT username FROM auth_user").rows == [("reader",)]
    for query in ("SELECT password FROM auth_user", "SELECT * FROM auth_user",
                  "SELECT username FROM auth_user WHERE password LIKE 'pbkdf2%'"):
        # SQLite's authoriser names the column; PostgreSQL's grants, the table.
        with pytest.raises(QueryRefused, match="auth_user"):
            run(query)


# SQLite: an allow-list of functions, a URI built safely, an interrupt at the deadline.

@pytest.mark.parametrize("call", [
    "fts3_tokenizer('simple')", "load_extension('/tmp/nothing.so')", "sqlite_log(1, 'x')",
])
def test_a_sqlite_function_that_reaches_outside_the_query_is_refused(monkeypatch, tmp_path, call):
    source = sqlite_source(monkeypatch, tmp_path / "warehouse.sqlite3")
    name = call.split("(")[0]
    with pytest.raises(QueryRefused, match=rf"calls {name}\(\), which reports may not call"):
        run(f"SELECT {call}", source=source)


def test_sqlites_own_functions_for_values_text_dates_json_and_windows_still_work(monkeypatch, tmp_path):
    source = sqlite_source(monkeypatch, tmp_path / "warehouse.sqlite3")
    result = run("SELECT upper(region), printf('%05d', total), date('2031-03-04', '+1 day'), "
                 "json_extract('{\"a\": 2}', '$.a'), round(sqrt(16)), row_number() OVER (ORDER BY total), "
                 "coalesce(NULL, 1), count(*) OVER () FROM sales WHERE region LIKE 'n%' GROUP BY region",
                 source=source)
    assert result.rows == [("NORTH", "00007", "2031-03-05", 2, 4.0, 1, 1, 1)]


def test_a_sqlite_file_whose_path_has_a_hash_and_a_question_mark_is_still_opened_read_only(monkeypatch, tmp_path):
    path = tmp_path / "exports #1?" / "sales?mode=rw#.sqlite3"
    source = sqlite_source(monkeypatch, path)
    assert run("SELECT region, total FROM sales ORDER BY region", source=source).rows == [("north", 7), ("south", 3)]
    with pytest.raises(QueryRefused, match="tried to change data.*Nothing changed"):
        run("WITH anything AS (SELECT 1) DELETE FROM sales", source=source)
    with sqlite3.connect(path) as warehouse:
        assert warehouse.execute("SELECT count(*) FROM sales").fetchone() == (2,)


def test_a_sqlite_query_of_few_slow_steps_is_stopped_at_its_timeout(monkeypatch, tmp_path):
    # Each row is one call of replace() on 10 MB of text, a tenth of a second or so: fewer virtual-
    # machine steps in all than one call of the progress handler needs, so only an interrupt stops it.
    source = sqlite_source(monkeypatch, tmp_path / "warehouse.sqlite3")
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80) "
            "SELECT sum(length(replace(printf('%.*c', 10000000 + i, 'x'), 'x', 'yy'))) FROM n")
    started = time.monotonic()
    with pytest.raises(QueryTimedOut, match="ran longer than its 1 s timeout and was stopped"):
        run(slow, source=source, timeout_seconds=1)
    # Not a speed goal: the 80 steps take about 10 s here; the query ended long before.
    assert time.monotonic() - started < 6


# PostgreSQL: the role's rights, checked at each run and at a worker's start; the whole query's time.

@pytest.fixture
def role_with(django_db_blocker):
    """role_with(attributes, grant=...): a real login role on the test database, dropped after the
    test; its name and URL."""
    made = []

    def make(attributes: str, *, grant: str = "") -> tuple[str, str]:
        role = f"report_probe_{uuid.uuid4().hex[:12]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s {attributes}', [role])
            if grant:
                cursor.execute(f'GRANT {grant} TO "{role}"')
        made.append(role)
        return role, database_url_as(role, role)

    yield make
    sources.data_source_connections_close()
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for role in made:
            cursor.execute(f'DROP OWNED BY "{role}"')
            cursor.execute(f'DROP ROLE "{role}"')


def database_url_as(username: str, password: str | None) -> str:
    s = connection.settings_dict
    return URL.create("postgresql", username=username, password=password or None, host=s["HOST"] or "127.0.0.1",
                      port=int(s["PORT"] or 5432), database=s["NAME"]).render_as_string(hide_password=False)


def superuser_url() -> str:
    """The tests' own connection: a superuser."""
    return database_url_as(connection.settings_dict["USER"], connection.settings_dict["PASSWORD"])


@postgresql_only
def test_a_superuser_connection_is_refused_saying_how_to_make_a_reader_role(monkeypatch):
    monkeypatch.setenv("REPORT_SOURCE_DEFAULT_URL", superuser_url())
    with pytest.raises(QueryRefused) as refused:
        run("SELECT 1")
    message = str(refused.value)
    assert "a superuser" in message and "CREATE ROLE" in message and "NOSUPERUSER" in message
    assert "default_transaction_read_only" in message and "REPORT_SOURCE_DEFAULT_URL" in message


@postgresql_only
@pytest.mark.parametrize(("attributes", "reason"), [
    ("REPLICATION", "may replicate"),
    ("IN ROLE pg_signal_backend", "pg_signal_backend"),
    ("IN ROLE pg_read_server_files", "pg_read_server_files"),
    ("IN ROLE pg_monitor", "pg_read_all_stats"),
])
def test_a_role_with_rights_past_reading_is_refused(monkeypatch, role_with, attributes, reason):
    monkeypatch.setenv("REPORT_SOURCE_RISKY_URL", role_with(attributes)[1])
    with pytest.raises(QueryRefused, match=f"(?s)'risky' connects as .*{reason}.*REPORT_SOURCE_RISKY_URL"):
        run("SELECT 1", source="risky")


@postgresql_only
def test_a_role_that_can_read_the_sessions_is_refused_before_the_query_runs(monkeypatch, role_with):
    monkeypatch.setenv("REPORT_SOURCE_DEFAULT_URL", role_with("", grant="SELECT ON ALL TABLES IN SCHEMA public")[1])
    with pytest.raises(QueryRefused, match="can read auth_user.password, django_session"):
        run("SELECT 1")


@postgresql_only
def test_a_role_that_may_switch_to_one_that_reads_the_sessions_is_refused(monkeypatch, role_with):
    # NOINHERIT does not hold: set_config('role', ...) switches, and query_to_xml() reads as that role.
    holder, _ = role_with("", grant="SELECT ON django_session")
    monkeypatch.setenv("REPORT_SOURCE_DEFAULT_URL", role_with(f'NOINHERIT IN ROLE "{holder}"')[1])
    SessionStore().create()
    with pytest.raises(QueryRefused, match="can read django_session"):
        run(f"SELECT set_config('role', '{holder}', true), "
            "query_to_xml('SELECT session_key FROM django_session', true, false, '')")


@postgresql_only
def test_a_run_over_a_superuser_source_says_so_in_its_section_error(monkeypatch):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from reports.models import Report

    monkeypatch.setenv("REPORT_SOURCE_ADMIN_URL", superuser_url())
    report = Report.objects.create(name="Risky", recipients="ana@example.com", timezone="UTC")
    section = ReportSection.objects.create(report=report, kind=ReportSection.Kind.SQL, name="Count",
                                           data_source="admin", query="SELECT 1 AS n")
    covered = CoveredPeriod.of(report, datetime(2031, 3, 4, 7, tzinfo=ZoneInfo("UTC")))
    output = section_build(section, covered=covered, position=1)
    assert "'admin' connects as" in output.error and "a superuser" in output.error and not output.tables


@postgresql_only
def test_the_reader_role_runs_a_select_and_nothing_that_acts_beyond_reading():
    assert run("SELECT current_user = session_user AS same, current_setting('transaction_read_only')").rows == [
        (True, "on")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (django_pid,) = cursor.fetchone()
    for query in (f"SELECT pg_terminate_backend({django_pid})", "SELECT pg_reload_conf()", "SELECT pg_switch_wal()",
                  "SELECT pg_create_physical_replication_slot('report_probe')", "SELECT pg_read_file('PG_VERSION')"):
        with pytest.raises((QueryRefused, sources.QueryFailed), match="permission denied|must be"):
            run(query)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # this test's own connection was not ended
        cursor.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'report_probe'")
        assert cursor.fetchone() == (0,)


@postgresql_only
def test_dblink_cannot_write_for_the_reader_role():
    User.objects.create_user("kept")
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    s = connection.settings_dict
    target = f"dbname={s['NAME']} host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} user={s['USER']}"
    with pytest.raises(sources.QueryFailed, match="password is required|permission denied"):
        run(f"SELECT dblink_exec('{target}', 'DELETE FROM auth_user')")
    assert User.objects.filter(username="kept").exists()


@postgresql_only
def test_an_advisory_lock_does_not_outlive_the_query_on_a_pooled_connection():
    assert run("SELECT pg_advisory_lock(424242) IS NULL AS locked").rows == [(False,)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242")
        assert cursor.fetchone() == (0,)


@postgresql_only
def test_the_whole_postgresql_query_ends_at_its_timeout_even_when_it_lifts_the_servers():
    lifted = "SELECT set_config('statement_timeout', '0', true), pg_sleep(1) FROM generate_series(1, 8)"
    started = time.monotonic()
    with pytest.raises(QueryTimedOut, match="ran longer than its 2 s timeout and was stopped"):
        run(lifted, timeout_seconds=2)
    # Not a speed goal: the query sleeps 8 s in all; it ended long before.
    assert time.monotonic() - started < 6


@postgresql_only
def test_a_worker_at_start_logs_each_postgresql_source_it_may_or_may_not_read_through(monkeypatch, caplog):
    monkeypatch.setenv("REPORT_SOURCE_ADMIN_URL", superuser_url())
    with caplog.at_level(logging.INFO, logger="reports.worker_start"):
        data_sources_check_at_start()
    lines = {record.getMessage().split(":")[0]: record for record in caplog.records}
    assert lines["data source 'default'"].levelno == logging.INFO
    refused = lines["data source 'admin'"]
    assert refused.levelno == logging.WARNING and "a superuser" in refused.getMessage()
