"""What a report's SQL may touch, whatever the query says: never the site's secrets, on SQLite only
reads and SQLite's own functions, on PostgreSQL only through a role with no rights past reading.

The query runs with the data source's rights, so these are checked where the query cannot reach:
SQLite's authoriser is consulted as each statement is compiled, and the PostgreSQL role's rights
are read before each query (and at a worker's start, reports.worker_start).
"""

from __future__ import annotations

import sqlite3

# What holds the site's secrets, by table: None for the whole table, else the columns. A report
# may read the rest of these tables (user names, alert settings), never these.
SECRET_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "django_session": None,  # session keys: each one logs a browser in as its user
    "auth_user": ("password",),  # password hashes
    # A webhook URL carries its key in the path (Slack's, Teams' and the like).
    "monitoring_alertsettings": ("webhook_url",),
    "monitoring_alertdelivery": ("recipient",),
}

# The functions a SQLite section may call: SQLite's own for values, text, dates, JSON, math,
# aggregates and windows. An allow-list, not a deny-list: what a build registers besides
# (fts3_tokenizer, load_extension, readfile/writefile of the shell, sqlite_log, R*Tree and FTS
# internals) depends on how SQLite and Python were compiled, and a function that a deny-list
# did not foresee must be refused, not allowed.
SQLITE_FUNCTIONS = frozenset("""
    abs changes char coalesce concat concat_ws format glob hex if ifnull iif instr last_insert_rowid
    length like likelihood likely lower ltrim max min nullif octet_length printf quote random
    randomblob replace round rtrim sign soundex sqlite_source_id sqlite_version substr substring
    total_changes trim typeof unhex unicode unistr unistr_quote unlikely upper zeroblob
    date time datetime julianday unixepoch strftime timediff current_date current_time current_timestamp
    avg count group_concat string_agg sum total median percentile percentile_cont percentile_disc
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10 log2
    mod pi pow power radians sin sinh sqrt tan tanh trunc
    -> ->> json jsonb json_array jsonb_array json_array_length json_error_position json_extract
    jsonb_extract json_insert jsonb_insert json_object jsonb_object json_patch jsonb_patch json_pretty
    json_quote json_remove jsonb_remove json_replace jsonb_replace json_set jsonb_set json_type json_valid
    json_group_array jsonb_group_array json_group_object jsonb_group_object
""".split())

# Predefined PostgreSQL roles whose rights reach past a read-only transaction or past what the
# role's grants show: signalling other sessions, files and programs on the server, every table
# (secrets too), other sessions' query text (with their literal values), checkpoints, subscriptions.
POSTGRESQL_RISKY_ROLES = (
    "pg_signal_backend", "pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
    "pg_read_all_data", "pg_write_all_data", "pg_read_all_stats", "pg_checkpoint", "pg_create_subscription",
)

READER_ROLE_SQL = (
    "CREATE ROLE reports_reader LOGIN PASSWORD '...' NOSUPERUSER NOREPLICATION NOBYPASSRLS; "
    "ALTER ROLE reports_reader SET default_transaction_read_only = on; "
    "ALTER ROLE reports_reader SET statement_timeout = '10min'; "
    "then GRANT SELECT on what reports may read and nothing on the site's secrets "
    "(compose/reports-reader.sql does all of it)"
)

SQLITE_WRITES = {sqlite3.SQLITE_INSERT: "INSERT", sqlite3.SQLITE_UPDATE: "UPDATE", sqlite3.SQLITE_DELETE: "DELETE"}


def secret_refusal(table: str, column: str) -> str | None:
    """Why reading `table`.`column` is refused, or None ('' for a column: the table as such, as count(*))."""
    columns = SECRET_COLUMNS.get(table.lower(), ())
    if columns is None:
        read = table.lower()
    elif column.lower() in columns:
        read = f"{table.lower()}.{column.lower()}"
    else:
        return None
    return f"reads {read}, which holds the site's secrets; reports never read them"


class SqliteReadsOnly:
    """SQLite's authoriser for a report's query: reads of tables but not of secrets, and SQLite's own
    functions; everything else is denied, and `refused` says what the query tried."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(self, action: int, first: str | None, second: str | None, _database, _inner) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            return self._deny(secret_refusal(first or "", second or ""))
        if action == sqlite3.SQLITE_FUNCTION:
            if (second or "").lower() in SQLITE_FUNCTIONS:
                return sqlite3.SQLITE_OK
            return self._deny(f"calls {second}(), which reports may not call: SQLite sections call only "
                              "SQLite's own functions for values, text, dates, JSON and math")
        if action == sqlite3.SQLITE_UPDATE and (first or "").lower() == "sqlite_master":
            # How SQLite authorises setting up a table-valued function (json_each, pragma_*).
            return self._deny("calls a table-valued function (json_each, pragma_... and the like), which SQLite "
                              "sections may not call")
        if action in SQLITE_WRITES:
            return self._deny(f"tried to change data ({SQLITE_WRITES[action]} on {first}), which reports may not do")
        return self._deny(f"tried to do more than read (SQLite authoriser action {action}), which reports may not do")

    def _deny(self, refusal: str | None) -> int:
        if refusal is None:
            return sqlite3.SQLITE_OK
        self.refused = self.refused or refusal
        return sqlite3.SQLITE_DENY


# Every role the connection's role is a member of, itself first: a query can switch to any of
# them, NOINHERIT or not (set_config('role', ...), then query_to_xml() runs SQL with its rights).
ROLE_RIGHTS = """
SELECT current_user, m.rolname, m.rolsuper, m.rolreplication, m.rolbypassrls, m.rolname = ANY(%(risky_roles)s),
       ARRAY(SELECT s.tab || coalesce('.' || s.col, '')
             FROM unnest(%(tables)s::text[], %(columns)s::text[]) AS s(tab, col)
             JOIN pg_class AS c ON c.oid = to_regclass(quote_ident(s.tab))
             LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = s.col AND NOT a.attisdropped
             WHERE CASE WHEN s.col IS NULL THEN has_any_column_privilege(m.oid, c.oid, 'SELECT')
                        ELSE coalesce(has_column_privilege(m.oid, c.oid, a.attnum, 'SELECT'), false) END)
FROM pg_roles AS m WHERE pg_has_role(current_user, m.oid, 'MEMBER')
ORDER BY m.rolname <> current_user, m.rolname
"""


def postgresql_role_refusals(connection) -> tuple[str, list[str]]:
    """The role a SQLAlchemy connection uses, and each right it (or a role it may switch to) has that
    a report's reader must not."""
    secrets = [(table, column) for table, columns in SECRET_COLUMNS.items() for column in (columns or (None,))]
    rows = connection.exec_driver_sql(ROLE_RIGHTS, {
        "risky_roles": list(POSTGRESQL_RISKY_ROLES),
        "tables": [table for table, _ in secrets], "columns": [column for _, column in secrets],
    }).all()
    role = rows[0][0]
    if rows[0][2]:
        return role, ["a superuser, whom no grant or read-only transaction holds"]
    refusals, readable = [], set()
    for _, name, superuser, replication, bypass_rls, risky, secrets_readable in rows:
        through = "" if name == role else f" through {name}"
        refusals += [f"{reason}{through}" for present, reason in (
            (superuser, "a superuser"), (replication, "may replicate"), (bypass_rls, "bypasses row security"),
        ) if present]
        if risky:
            refusals.append(f"a member of {name}")
        readable.update(secrets_readable)
    if readable:
        refusals.append(f"can read {', '.join(sorted(readable))}")
    return role, refusals
