"""A foreign key that cascades in the database itself, for the tables the retention engine
empties with one raw DELETE (no Django cascade runs then).

Django 5.2 cannot declare ON DELETE on a field. On PostgreSQL the constraint is replaced; on
SQLite a constraint cannot be altered, so the table, which must still be empty (call this in the
migration that creates it), is created again from its own DDL with the clause added. A later
migration that makes Django remake the table on SQLite drops the clause again: repeat the step
there (the retention tests of that table fail when it is missing).
"""

import re


def cascade_in_database(schema_editor, *, table: str, column: str, referenced: str) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND confrelid = "
                           "%s::regclass AND contype = 'f' AND conkey = ARRAY[(SELECT attnum FROM pg_attribute "
                           "WHERE attrelid = %s::regclass AND attname = %s)]", [table, referenced, table, column])
            (name,) = cursor.fetchone()
            cursor.execute(
                f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}", ADD CONSTRAINT "{name}" FOREIGN KEY ("{column}") '
                f'REFERENCES "{referenced}" ("id") ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED')
        elif connection.vendor == "sqlite":
            _sqlite(cursor, table=table, column=column, referenced=referenced)


def _sqlite(cursor, *, table: str, column: str, referenced: str) -> None:
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table])
    (create,) = cursor.fetchone()
    reference = re.compile(rf'("{column}" [^,]*?REFERENCES "{referenced}" \("id"\))')
    if not reference.search(create):
        raise RuntimeError(f"{table}.{column}: its reference to {referenced} was not found in {create!r}")
    cursor.execute(f'SELECT count(*) FROM "{table}"')
    if cursor.fetchone()[0]:
        raise RuntimeError(f"{table} is not empty: it cannot be created again with ON DELETE CASCADE")
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL", [table])
    indexes = [row[0] for row in cursor.fetchall()]
    cursor.execute(f'DROP TABLE "{table}"')
    cursor.execute(reference.sub(r"\1 ON DELETE CASCADE", create, count=1))
    for index in indexes:
        cursor.execute(index)
