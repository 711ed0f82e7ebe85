"""Deleting a report run deletes its files and deliveries in the database itself: the retention
engine removes old runs with one raw DELETE, without Django's cascade (shared.db_cascade)."""

from django.db import migrations

from shared.db_cascade import cascade_in_database

TABLES = ("reports_reportfile", "reports_reportdelivery")


def cascade(apps, schema_editor) -> None:
    for table in TABLES:
        cascade_in_database(schema_editor, table=table, column="run_id", referenced="reports_reportrun")


class Migration(migrations.Migration):
    dependencies = [("reports", "0001_initial")]

    operations = [migrations.RunPython(cascade, migrations.RunPython.noop)]
