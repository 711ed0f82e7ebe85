"""SQL sections read through SQLAlchemy, read-only, with a timeout and a row cap, on both databases."""

import time

import pytest
from django.contrib.auth.models import User
from django.db import connection

from reports import sources
from reports.sources import QueryFailed, QueryRefused, QueryTimedOut, data_source_url, query_run

pytestmark = pytest.mark.django_db(transaction=True)


def run(query: str, **options):
    return query_run(source=options.pop("source", "default"), query=query,
                     timeout_seconds=options.pop("timeout_seconds", 10), row_limit=options.pop("row_limit", 100))


def test_it_reads_the_sites_own_database():
    User.objects.create_user("reader", "reader@example.com")
    result = run("SELECT username, email FROM auth_user ORDER BY username")
    assert result.columns == ["username", "email"]
    assert result.rows == [("reader", "reader@example.com")] and not result.truncated


def test_it_stops_at_the_row_limit_and_says_so():
    result = run("SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3", row_limit=2)
    assert len(result.rows) == 2 and result.truncated


def test_a_delete_is_refused_with_a_clear_error_and_changes_nothing():
    User.objects.create_user("kept")
    with pytest.raises(QueryRefused, match="Only a SELECT query may run in a report; this one starts with DELETE"):
        run("DELETE FROM auth_user")
    assert User.objects.filter(username="kept").exists()


def test_the_database_itself_refuses_a_write_hidden_behind_a_select_keyword():
    User.objects.create_user("kept")
    hidden_write = (
        "WITH gone AS (DELETE FROM auth_user RETURNING id) SELECT count(*) FROM gone"
        if connection.vendor == "postgresql" else
        "WITH anything AS (SELECT 1) DELETE FROM auth_user"  # SQLite's WITH ... DELETE
    )
    with pytest.raises(QueryRefused, match="tried to change data.*Nothing changed"):
        run(hidden_write)
    assert User.objects.filter(username="kept").exists()


def test_an_update_is_refused_and_changes_nothing():
    User.objects.create_user("kept", "kept@example.com")
    with pytest.raises(QueryRefused, match="starts with UPDATE"):
        run("/* harmless? */ UPDATE auth_user SET email = 'x@example.com'")
    assert User.objects.get(username="kept").email == "kept@example.com"


def test_a_query_running_past_its_timeout_is_stopped_with_a_clear_error():
    endless = ("SELECT pg_sleep(30)" if connection.vendor == "postgresql" else
               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n")
    started = time.monotonic()
    with pytest.raises(QueryTimedOut, match="ran longer than its 1 s timeout and was stopped"):
        run(endless, timeout_seconds=1)
    assert time.monotonic() - started < 10


def test_a_broken_query_names_the_data_source_and_the_databases_reason():
    with pytest.raises(QueryFailed, match="failed on data source 'default': .*no_such_table"):
        run("SELECT * FROM no_such_table")


def test_a_named_data_source_comes_from_its_environment_variable(monkeypatch, tmp_path):
    import sqlite3

    path = tmp_path / "warehouse.sqlite3"
    with sqlite3.connect(path) as warehouse:
        warehouse.execute("CREATE TABLE sales (region TEXT, total INTEGER)")
        warehouse.execute("INSERT INTO sales VALUES ('north', 7)")
    monkeypatch.setenv("REPORT_SOURCE_WAREHOUSE_URL", f"sqlite:///{path}")
    assert run("SELECT region, total FROM sales", source="warehouse").rows == [("north", 7)]
    with pytest.raises(QueryRefused, match="tried to change data"):
        run("WITH x AS (SELECT 1) DELETE FROM sales", source="warehouse")
    with sqlite3.connect(path) as warehouse:
        assert warehouse.execute("SELECT count(*) FROM sales").fetchone() == (1,)


def test_an_unknown_data_source_names_the_variable_to_set():
    with pytest.raises(QueryRefused, match="Unknown data source 'crm': set REPORT_SOURCE_CRM_URL"):
        data_source_url("crm")


postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's own protocol")


def test_more_than_one_statement_is_refused_with_a_clear_error_and_changes_nothing():
    User.objects.create_user("kept")
    with pytest.raises(QueryRefused, match="exactly one SELECT statement; this query has 3 statements"):
        run("SELECT 1; COMMIT; DELETE FROM auth_user")
    assert User.objects.filter(username="kept").exists()


def test_a_trailing_semicolon_and_comments_are_still_one_statement():
    assert run("-- visits\nSELECT 1 AS n; -- done").rows == [(1,)]


@postgresql_only
def test_the_database_itself_refuses_a_write_after_a_commit_in_the_same_text(monkeypatch):
    # Past the text check (as if it missed a case): the server-side cursor takes one statement only.
    monkeypatch.setattr(sources, "select_statement", lambda query: query)
    User.objects.create_user("kept")
    with pytest.raises(QueryFailed, match="cannot insert multiple commands"):
        run("SELECT 1; COMMIT; DELETE FROM auth_user")
    assert User.objects.filter(username="kept").exists()


@postgresql_only
def test_the_timeout_cannot_be_switched_off_from_the_query(monkeypatch):
    monkeypatch.setattr(sources, "select_statement", lambda query: query)
    started = time.monotonic()
    with pytest.raises(QueryFailed, match="cannot insert multiple commands"):
        run("SELECT 1; SET LOCAL statement_timeout = 0; SELECT pg_sleep(5)", timeout_seconds=1)
    assert time.monotonic() - started < 4


def test_a_big_result_with_a_small_row_cap_reads_only_the_cap():
    big = ("SELECT i, repeat('x', 100) AS padding FROM generate_series(1, 400000) AS i"
           if connection.vendor == "postgresql" else
           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000) "
           "SELECT i, printf('%.100c', 'x') AS padding FROM n")
    result = run(big, row_limit=10)
    assert result.truncated and [row[0] for row in result.rows] == list(range(1, 11))


@pytest.mark.parametrize("url", ["mysql://reader@127.0.0.1/shop", "oracle://reader@127.0.0.1/shop"])
def test_a_data_source_that_is_neither_postgresql_nor_sqlite_is_refused(monkeypatch, url):
    monkeypatch.setenv("REPORT_SOURCE_SHOP_URL", url)
    with pytest.raises(QueryRefused, match="read only PostgreSQL and SQLite databases"):
        data_source_url("shop")
