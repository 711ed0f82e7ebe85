"""Indexes for the admin's lists at a million rows (issue 15).

The run ledger's kind filter gets a partial index of the runs that are not scheduled ones.

The task results' opt-in substring search (scheduler.admin_results) runs Django's own
`icontains`, `UPPER(column::text) LIKE UPPER('%...%')`, which no B-tree serves: a trigram GIN
index on exactly that expression of each searched column lets PostgreSQL answer from the
indexes instead of reading every result. django_celery_results' table is not ours, but the
search is: these indexes live and go with our admin, so our app creates them, on PostgreSQL only
(SQLite has no trigram indexes; its lists are small). pg_trgm is a trusted extension
(PostgreSQL 13 and later): the database's owner may create it without being a superuser.
CONCURRENTLY, outside a transaction, so that workers keep writing results while a big table is
indexed.
"""

from django.db import migrations, models

SUBSTRING_SEARCHED = ["task_name", "periodic_task_name", "worker", "task_args", "task_kwargs"]
TABLE = "django_celery_results_taskresult"


def index_name(column: str) -> str:
    return f"scheduler_result_{column}_trgm"


def trigram_indexes_create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in SUBSTRING_SEARCHED:
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index_name(column)} ON {TABLE} "
                              f"USING gin ((UPPER({column}::text)) gin_trgm_ops)")


def trigram_indexes_drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SUBSTRING_SEARCHED:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(column)}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("django_celery_results", "0014_alter_taskresult_status"),
        ("scheduler", "0005_schedule_health"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="schedulerun",
            index=models.Index(condition=models.Q(("kind", "scheduled"), _negated=True),
                               fields=["kind", "-scheduled_for"], name="scheduler_run_unscheduled"),
        ),
        migrations.RunPython(trigram_indexes_create, trigram_indexes_drop),
    ]
