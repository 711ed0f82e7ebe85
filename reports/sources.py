"""Data sources of SQL sections, and running one query on one: read-only, time-limited, capped.

Read-only is the database's guarantee, not a guess from the query text: PostgreSQL runs the
query in a READ ONLY transaction through a server-side cursor, SQLite opens the file with
`mode=ro`. The checks in `select_statement` only give a clearer message earlier (in the admin
form, too).

The server-side cursor matters twice on PostgreSQL. A query without parameters would otherwise
go out as one simple-protocol message, where `SELECT 1; COMMIT; DELETE ...` ends the read-only
transaction and `SET LOCAL statement_timeout = 0` lifts the timeout; `DECLARE ... CURSOR FOR`
takes exactly one SELECT. And rows then come over in batches, so the row and byte caps
(reports.result_budget) also cap memory: a plain cursor loads the whole result into the worker
before the first fetch. Other databases
are refused: there is no read-only guarantee to rely on there.

A read-only transaction does not hold the role it runs as, so what a query may read and call
is held by the data source (reports.source_rights): on SQLite an authoriser, on PostgreSQL a
reader role, whose rights are checked before each query. The timeout is the whole query's,
kept from this side too (a cancel or an interrupt from a timer), since the server's counts per
FETCH on PostgreSQL and SQLite has none.

SQLAlchemy is imported where a query runs, not with this module: the admin imports this
module, so every process that starts Django (beat, workers, `manage.py cleanup`) would
otherwise carry its 13 MB.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import sqlparse
from django.conf import settings
from django.db import connections

from reports.result_budget import KeptRows
from reports.source_rights import READER_ROLE_SQL, SqliteReadsOnly, postgresql_role_refusals

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine
    from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "default"
SOURCE_VARIABLE = re.compile(r"^REPORT_SOURCE_(?P<name>.+)_URL$")
# SQLite calls the progress handler every this many virtual-machine steps (about a
# millisecond of work), which is how often a runaway query checks its deadline.
SQLITE_PROGRESS_STEPS = 10_000
# How long opening a PostgreSQL source may take before the run (or a worker's start) gives up.
CONNECT_TIMEOUT_SECONDS = 10
LEADING_COMMENTS = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/)*", re.DOTALL)
# Rows a PostgreSQL server-side cursor brings over per round trip, at most.
FETCH_BATCH_ROWS = 1_000
SUPPORTED_BACKENDS = ("postgresql", "sqlite")


class QueryRefused(ValueError):
    """The query or its data source is not acceptable; nothing was run."""


class QueryTimedOut(RuntimeError):
    pass


class QueryFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    # The rows as kept, the limits they were read under and what those cut.
    kept: KeptRows

    @property
    def rows(self) -> list[tuple]:
        return self.kept.rows

    @property
    def truncated(self) -> bool:
        """True when the row limit cut the result: there were more rows."""
        return self.kept.over_row_limit


def source_variable(name: str) -> str:
    return f"REPORT_SOURCE_{name.upper()}_URL"


def select_statement(query: str) -> str:
    """The query's one SELECT statement, without comments or a trailing semicolon; else QueryRefused."""
    statements = [text for text in (sqlparse.format(part, strip_comments=True).strip().rstrip(";").rstrip()
                                     for part in sqlparse.split(query)) if text]
    if len(statements) > 1:
        raise QueryRefused(
            f"A report section runs exactly one SELECT statement; this query has {len(statements)} "
            "statements separated by ';'. Keep one, or join them into one query (WITH ... SELECT)."
        )
    statement = statements[0] if statements else ""
    keyword = (LEADING_COMMENTS.sub("", statement).lstrip("(").split(None, 1) or [""])[0].upper()
    if keyword not in ("SELECT", "WITH", "VALUES"):
        raise QueryRefused(
            f"Only a SELECT query may run in a report; this one starts with {keyword or 'nothing'}. "
            "Reports read data and never change it."
        )
    return statement


def data_source_names() -> list[str]:
    """'default' and every source named by a REPORT_SOURCE_<NAME>_URL variable."""
    named = sorted(match["name"].lower() for match in map(SOURCE_VARIABLE.match, os.environ) if match)
    return [DEFAULT_SOURCE, *(name for name in named if name != DEFAULT_SOURCE)]


def data_source_url(name: str) -> URL:
    """The SQLAlchemy URL of a named source: read-only for SQLite files.

    'default' is REPORT_SOURCE_DEFAULT_URL when set (on PostgreSQL a reader role on the site's
    database: the site's own role owns its tables, sessions included), else the site's database.
    """
    from sqlalchemy import make_url

    variable = source_variable(name)
    value = os.environ.get(variable, "")
    if not value and name == DEFAULT_SOURCE:
        return _django_database_url()
    if not value:
        raise QueryRefused(f"Unknown data source {name!r}: set {variable} to its database URL, or use 'default'.")
    try:
        url = make_url(value)
    except Exception as error:
        raise QueryRefused(f"{variable}: not a database URL ({error}).") from None
    backend = "postgresql" if url.get_backend_name() == "postgres" else url.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise QueryRefused(
            f"{variable}: reports read only PostgreSQL and SQLite databases, where the query can be held "
            f"read-only; this URL names a {backend!r} database."
        )
    if backend == "sqlite":
        return _read_only_sqlite(url.database)
    # psycopg 3: its server-side cursors are what keep a query to one statement (module docstring).
    return url.set(drivername="postgresql+psycopg")


def _django_database_url() -> URL:
    # The live settings of the connection, not settings.DATABASES: under test they name the
    # test database.
    from sqlalchemy import URL

    database = connections["default"].settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        return _read_only_sqlite(str(database["NAME"]))
    return URL.create(
        "postgresql+psycopg", username=database["USER"] or None, password=database["PASSWORD"] or None,
        host=database["HOST"] or None, port=int(database["PORT"]) if database["PORT"] else None,
        database=database["NAME"],
    )


def _read_only_sqlite(path: str) -> URL:
    # A URI filename: its path percent-encoded, or a '#' or '?' in it would end the path there
    # and drop mode=ro with it (SQLite would open, even create, another file read-write).
    from sqlalchemy import URL

    return URL.create("sqlite", database=f"file:{quote(os.path.abspath(path))}", query={"mode": "ro", "uri": "true"})


# One engine (and its connection pool) per data source URL and process: a report of several
# sections, and the next day's report, reuse connections instead of opening one per query.
_engines: dict[str, Engine] = {}


def _engine_for(url: URL) -> Engine:
    from sqlalchemy import create_engine, event

    key = url.render_as_string(hide_password=False)
    if key not in _engines:
        postgresql = url.get_backend_name() == "postgresql"
        engine = create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True, pool_recycle=300,
                               connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS} if postgresql else {})
        if postgresql:
            event.listen(engine, "reset", _session_state_discard)
        _engines[key] = engine
    return _engines[key]


def _session_state_discard(dbapi_connection, _record, reset_state) -> None:
    """Leaves a pooled PostgreSQL connection as a new one: a report's query may take what outlives
    the transaction's rollback (pg_advisory_lock, a LISTEN, a prepared statement) and the next
    report, or the next day's, would run with it."""
    if reset_state.terminate_only:
        return
    dbapi_connection.rollback()
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute("DISCARD ALL")
    finally:
        dbapi_connection.autocommit = False


def data_source_connections_close() -> None:
    """Close every pooled data-source connection of this process, and forget the engines.

    The pools otherwise hold their connections for the life of the process; the test suite
    calls this after each test so that the test database, which the default source reads, can
    be dropped at the end.
    """
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def query_run(*, source: str, query: str, timeout_seconds: float, row_limit: int,
              byte_limit: int | None = None) -> QueryResult:
    """Runs the query, keeping at most `row_limit` rows and `byte_limit` bytes (None: REPORT_SECTION_BYTES)."""
    from sqlalchemy.exc import DBAPIError

    kept = KeptRows(row_limit=row_limit, cell_bytes=settings.REPORT_CELL_BYTES,
                    byte_limit=byte_limit or settings.REPORT_SECTION_BYTES)
    statement = select_statement(query)
    engine = _engine_for(data_source_url(source))
    reads_only = SqliteReadsOnly()
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                _postgresql_read_only(connection, source=source, timeout_seconds=timeout_seconds)
                # no_parameters: the text goes to psycopg alone, so a '%' in it (LIKE 'a%') is no placeholder.
                streaming = connection.execution_options(
                    stream_results=True, max_row_buffer=min(row_limit + 1, FETCH_BATCH_ROWS), no_parameters=True
                )
                # The server's statement_timeout counts per FETCH, and set_config() in the query
                # lifts it for the FETCHes after: the whole query's time is kept from here.
                with _Deadline(connection.connection.driver_connection.cancel_safe, timeout_seconds):
                    return _fetch(streaming, statement, kept)
            driver = connection.connection.driver_connection
            with _sqlite_authorised(driver, reads_only), _sqlite_deadline(driver, timeout_seconds):
                return _fetch(connection, statement, kept)
    except DBAPIError as error:
        if reads_only.refused:
            raise QueryRefused(f"The query {reads_only.refused}. Nothing changed.") from None
        raise _explained(error, source=source, timeout_seconds=timeout_seconds) from None


def data_source_check(name: str) -> str:
    """How reports read data source `name`, checked as each run checks it; QueryRefused when they may not."""
    from sqlalchemy.exc import DBAPIError

    engine = _engine_for(data_source_url(name))
    if engine.dialect.name != "postgresql":
        return "SQLite, opened read-only, where reports read all but the site's secrets"
    try:
        with engine.connect() as connection:
            role = _postgresql_read_only(connection, source=name, timeout_seconds=CONNECT_TIMEOUT_SECONDS)
            connection.rollback()
    except DBAPIError as error:
        raise _explained(error, source=name, timeout_seconds=CONNECT_TIMEOUT_SECONDS) from None
    return f"PostgreSQL as role {role!r}, which has no right past reading and cannot read the site's secrets"


def _postgresql_read_only(connection, *, source: str, timeout_seconds: float) -> str:
    """Opens the read-only transaction and checks the role's rights in it; the role's name, or QueryRefused.

    A read-only transaction does not hold a superuser (dblink writes through another connection;
    ending sessions, pg_reload_conf, a replication slot outlive the rollback), nor a role that can
    read the site's secrets: reports run only as a reader role.
    """
    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_seconds * 1000)}")
    role, refusals = postgresql_role_refusals(connection)
    if refusals:
        raise QueryRefused(
            f"Data source {source!r} connects as {role!r}, which reports may not use: {'; '.join(refusals)}. "
            "A report's query runs with its role's rights, and these reach past a read-only transaction "
            "(dblink, ending other sessions, the server's files) or read the site's secrets. Connect as a "
            f"reader role instead ({READER_ROLE_SQL}) and set {source_variable(source)} to its URL "
            "(README, Reports)."
        )
    return role


def _fetch(connection, statement: str, kept: KeptRows) -> QueryResult:
    # exec_driver_sql: the text goes to the driver as written (no ":name" parameter parsing).
    result = connection.exec_driver_sql(statement)
    if not result.returns_rows:
        raise QueryRefused("The query returned no rows to show; a report section needs a SELECT.")
    columns = list(result.keys())
    # fetchmany asks the driver (PostgreSQL: the server-side cursor) for just that many rows.
    while batch := result.fetchmany(kept.rows_to_fetch(FETCH_BATCH_ROWS)):
        if not kept.keep(batch):
            break
    # Closing the cursor first: the rows past the cap are never fetched (or computed, where the plan allows).
    result.close()
    connection.rollback()
    return QueryResult(columns=columns, kept=kept)


class _Deadline:
    """Calls `stop_query` (a driver's cancel or interrupt) once the query's time is up, unless it ended first."""

    def __init__(self, stop_query, timeout_seconds: float) -> None:
        self.stop_query = stop_query
        self.lock = threading.Lock()
        self.ended = False
        self.timer = threading.Timer(timeout_seconds, self._expire)
        self.timer.daemon = True

    def _expire(self) -> None:
        with self.lock:
            if self.ended:
                return
            try:
                self.stop_query()
            except Exception:
                logger.warning("could not stop a report's query at its timeout", exc_info=True)

    def __enter__(self):
        self.timer.start()

    def __exit__(self, *exc_info) -> None:
        # Under the lock: once the query has ended, no late cancel reaches the connection's next use.
        with self.lock:
            self.ended = True
        self.timer.cancel()


@contextmanager
def _sqlite_authorised(driver, reads_only: SqliteReadsOnly):
    """Holds a SQLite query to reads of what is not secret: SQLite asks the authoriser as it
    compiles the statement. Setting one also expires the connection's compiled statements, so a
    cached one is compiled again under it."""
    driver.set_authorizer(reads_only)
    try:
        yield
    finally:
        driver.set_authorizer(None)


class _sqlite_deadline(_Deadline):
    """Stops a SQLite query at its deadline, as SQLite has no statement timeout.

    interrupt() from a timer stops the query between any two steps, however slow one step is (a
    replace() on 10 MB of text). SQLite drops an interrupt that comes while no statement runs
    (while this one is still being compiled), so the progress handler checks the deadline too.
    """

    def __init__(self, driver, timeout_seconds: float) -> None:
        super().__init__(driver.interrupt, timeout_seconds)
        self.driver = driver
        self.deadline = time.monotonic() + timeout_seconds

    def __enter__(self):
        self.driver.set_progress_handler(lambda: time.monotonic() > self.deadline, SQLITE_PROGRESS_STEPS)
        super().__enter__()

    def __exit__(self, *exc_info) -> None:
        super().__exit__(*exc_info)
        self.driver.set_progress_handler(None, 0)


def _explained(error: DBAPIError, *, source: str, timeout_seconds: float) -> Exception:
    reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate == "57014" or reason == "interrupted":
        return QueryTimedOut(f"The query ran longer than its {timeout_seconds:g} s timeout and was stopped.")
    # 0A000 "DECLARE CURSOR must not contain data-modifying statements in WITH": the server-side
    # cursor refuses the write before the read-only transaction has to.
    if sqlstate == "25006" or "readonly database" in reason or "data-modifying" in reason:
        return QueryRefused(f"The query tried to change data, which reports may not do ({reason}). Nothing changed.")
    # 42501: what the reader role was not granted (the site's secrets, pg_terminate_backend, ...).
    if sqlstate == "42501":
        return QueryRefused(f"Data source {source!r} refused the query: {reason}. Its role reads only what it "
                            "was granted, and never the site's secrets.")
    return QueryFailed(f"The query failed on data source {source!r}: {reason}")
