"""The retention engine's raw DELETE takes these rows with it (shared.db_cascade). Its own
migration: Django adds a new table's foreign keys at the end of the migration creating it."""

from django.db import migrations

from shared.db_cascade import cascade_in_database


def cascade(apps, schema_editor) -> None:
    cascade_in_database(schema_editor, table="monitoring_alertdelivery", column="flip_id", referenced="monitoring_flip")


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_initial")]

    operations = [migrations.RunPython(cascade, migrations.RunPython.noop)]
