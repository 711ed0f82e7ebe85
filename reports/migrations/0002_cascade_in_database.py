"""Deleting a report run deletes its files and deliveries in the database itself.

The retention engine removes old runs with one raw DELETE, without Django's cascade, so the
foreign keys must cascade on their own. Django 5.2 cannot declare that on a field. On SQLite a
constraint cannot be altered, so the (still empty) tables are created again from their own
DDL with ON DELETE CASCADE added. A later migration that makes Django remake these tables on
SQLite drops the clause again: repeat this step there (tests/reports/test_retention.py fails
when it is missing).
"""

from django.db import migrations

TABLES = ("reports_reportfile", "reports_reportdelivery")
REFERENCE = 'REFERENCES "reports_reportrun" ("id")'


def cascade(apps, schema_editor) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for table in TABLES:
            if connection.vendor == "postgresql":
                _cascade_postgresql(cursor, table)
            elif connection.vendor == "sqlite":
                _cascade_sqlite(cursor, table)


def _cascade_postgresql(cursor, table: str) -> None:
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND confrelid = 'reports_reportrun'::regclass",
        [table],
    )
    (name,) = cursor.fetchone()
    cursor.execute(
        f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}", ADD CONSTRAINT "{name}" FOREIGN KEY ("run_id") '
        f'REFERENCES "reports_reportrun" ("id") ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED'
    )


def _cascade_sqlite(cursor, table: str) -> None:
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table])
    (create,) = cursor.fetchone()
    if REFERENCE not in create:
        raise RuntimeError(f"{table}: the reference to reports_reportrun was not found in {create!r}")
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL", [table])
    indexes = [row[0] for row in cursor.fetchall()]
    cursor.execute(f'DROP TABLE "{table}"')
    cursor.execute(create.replace(REFERENCE, f"{REFERENCE} ON DELETE CASCADE"))
    for index in indexes:
        cursor.execute(index)


class Migration(migrations.Migration):
    dependencies = [("reports", "0001_initial")]

    operations = [migrations.RunPython(cascade, migrations.RunPython.noop)]
