"""Triggers that bump scheduler_schedulechanges on every write to the schedule tables.

Django signals miss `QuerySet.update`, bulk writes and raw SQL; database triggers do not, so
beat sees every edit within a second by reading one number. The bump is an upsert so that it
works even when the row was removed (a test database flush).
"""

from django.db import migrations

# (table, events) that change when or whether a schedule fires.
WATCHED = [
    ("django_celery_beat_periodictask", ("INSERT", "UPDATE", "DELETE")),
    ("django_celery_beat_crontabschedule", ("UPDATE", "DELETE")),
    ("django_celery_beat_intervalschedule", ("UPDATE", "DELETE")),
    ("django_celery_beat_solarschedule", ("UPDATE", "DELETE")),
    ("django_celery_beat_clockedschedule", ("UPDATE", "DELETE")),
]

BUMP = (
    "INSERT INTO scheduler_schedulechanges (id, version) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET version = scheduler_schedulechanges.version + 1"
)


def postgresql_statements():
    yield (
        "CREATE OR REPLACE FUNCTION scheduler_bump_schedule_changes() RETURNS trigger AS $$ "
        f"BEGIN {BUMP}; RETURN NULL; END $$ LANGUAGE plpgsql"
    )
    for table, events in WATCHED:
        # Once per statement: a QuerySet.update of 10,000 rows bumps once, not 10,000 times.
        yield (
            f"CREATE TRIGGER scheduler_changes_{table[19:]} AFTER {' OR '.join(events)} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION scheduler_bump_schedule_changes()"
        )


def sqlite_statements():
    for table, events in WATCHED:
        for event in events:
            # SQLite has row triggers only.
            yield (
                f"CREATE TRIGGER scheduler_changes_{table[19:]}_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {BUMP}; END"
            )


def drop_statements(vendor):
    if vendor == "postgresql":
        yield "DROP FUNCTION IF EXISTS scheduler_bump_schedule_changes() CASCADE"
        return
    for table, events in WATCHED:
        for event in events:
            yield f"DROP TRIGGER IF EXISTS scheduler_changes_{table[19:]}_{event.lower()}"


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": postgresql_statements, "sqlite": sqlite_statements}.get(vendor)
    if statements is None:
        raise RuntimeError(f"schedule change triggers: unsupported database {vendor!r} (PostgreSQL or SQLite)")
    for statement in statements():
        schema_editor.execute(statement)
    schema_editor.execute(BUMP)


def drop_triggers(apps, schema_editor):
    for statement in drop_statements(schema_editor.connection.vendor):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0002_run_ledger")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
