"""Data sources of SQL sections, and running one query on one: read-only, time-limited, capped.

Read-only is the database's guarantee, not a guess from the query text: PostgreSQL runs the
query in a READ ONLY transaction through a server-side cursor, SQLite opens the file with
`mode=ro`. The checks in `select_statement` only give a clearer message earlier (in the admin
form, too).

The server-side cursor matters twice on PostgreSQL. A query without parameters would otherwise
go out as one simple-protocol message, where `SELECT 1; COMMIT; DELETE ...` ends the read-only
transaction and `SET LOCAL statement_timeout = 0` lifts the timeout; `DECLARE ... CURSOR FOR`
takes exactly one SELECT. And rows then come over in batches, so the row cap also caps memory:
a plain cursor loads the whole result into the worker before the first fetch. Other databases
are refused: there is no read-only guarantee to rely on there.

SQLAlchemy is imported where a query runs, not with this module: the admin imports this
module, so every process that starts Django (beat, workers, `manage.py cleanup`) would
otherwise carry its 13 MB.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlparse
from django.db import connections

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine
    from sqlalchemy.exc import DBAPIError

DEFAULT_SOURCE = "default"
# SQLite calls the progress handler every this many virtual-machine steps (about a
# millisecond of work), which is how often a runaway query checks its deadline.
SQLITE_PROGRESS_STEPS = 10_000
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
    rows: list[tuple]
    # True when the row limit cut the result: there were more rows.
    truncated: bool


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


def data_source_url(name: str) -> URL:
    """The SQLAlchemy URL of a named source: read-only for SQLite files."""
    if name == DEFAULT_SOURCE:
        return _django_database_url()
    from sqlalchemy import make_url

    variable = source_variable(name)
    value = os.environ.get(variable, "")
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
    from sqlalchemy import make_url

    return make_url(f"sqlite:///file:{path}?mode=ro&uri=true")


# One engine (and its connection pool) per data source URL and process: a report of several
# sections, and the next day's report, reuse connections instead of opening one per query.
_engines: dict[str, Engine] = {}


def _engine_for(url: URL) -> Engine:
    from sqlalchemy import create_engine

    key = url.render_as_string(hide_password=False)
    if key not in _engines:
        _engines[key] = create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True, pool_recycle=300)
    return _engines[key]


def data_source_connections_close() -> None:
    """Close every pooled data-source connection of this process, and forget the engines.

    The pools otherwise hold their connections for the life of the process; the test suite
    calls this after each test so that the test database, which the default source reads, can
    be dropped at the end.
    """
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def query_run(*, source: str, query: str, timeout_seconds: float, row_limit: int) -> QueryResult:
    from sqlalchemy.exc import DBAPIError

    statement = select_statement(query)
    engine = _engine_for(data_source_url(source))
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_seconds * 1000)}")
                streaming = connection.execution_options(
                    stream_results=True, max_row_buffer=min(row_limit + 1, FETCH_BATCH_ROWS)
                )
                return _fetch(streaming, statement, row_limit)
            with _sqlite_deadline(connection, timeout_seconds):
                return _fetch(connection, statement, row_limit)
    except DBAPIError as error:
        raise _explained(error, source=source, timeout_seconds=timeout_seconds) from None


def _fetch(connection, statement: str, row_limit: int) -> QueryResult:
    # exec_driver_sql: the text goes to the driver as written (no ":name" parameter parsing).
    result = connection.exec_driver_sql(statement)
    if not result.returns_rows:
        raise QueryRefused("The query returned no rows to show; a report section needs a SELECT.")
    columns = list(result.keys())
    rows = [tuple(row) for row in result.fetchmany(row_limit + 1)]
    # Closing the cursor first: the rows past the cap are never fetched (or computed, where the plan allows).
    result.close()
    connection.rollback()
    return QueryResult(columns=columns, rows=rows[:row_limit], truncated=len(rows) > row_limit)


class _sqlite_deadline:
    """Interrupts a SQLite query once it runs past its deadline (SQLite has no statement timeout)."""

    def __init__(self, connection, timeout_seconds: float) -> None:
        self.driver = connection.connection.driver_connection
        self.deadline = time.monotonic() + timeout_seconds

    def __enter__(self):
        self.driver.set_progress_handler(lambda: time.monotonic() > self.deadline, SQLITE_PROGRESS_STEPS)

    def __exit__(self, *exc_info) -> None:
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
    return QueryFailed(f"The query failed on data source {source!r}: {reason}")
