"""Insert rows that may already exist, and learn which ones this process wrote.

Several processes (evaluators, beats) may insert the same rows at once; the one whose INSERT
wrote a row is the one that acts on it (writes its flip, publishes its run), as a conditional
UPDATE decides for rows that exist. Django's `bulk_create(ignore_conflicts=True)` cannot say
which rows it wrote, and one INSERT per row in a savepoint of its own cost 2 ms each: 500 new
schedules were a second. `INSERT ... ON CONFLICT DO NOTHING RETURNING` says it in one statement
per batch, on PostgreSQL and on SQLite (3.35 and later) alike.
"""

from django.db import connection, models
from django.db.models.constants import OnConflict


def inserted_first(objs: list[models.Model], *, returning: tuple[str, ...] = ()) -> set:
    """Insert `objs` (one model), skipping any whose unique values already exist; the primary
    keys of the rows this call wrote, or with `returning` field names, tuples of those fields.

    Objects without a primary key get one from the database (their AutoField is left out of the
    INSERT); `returning` then names a unique field that tells them apart, and the caller sets
    each written object's key from the tuples."""
    if not objs:
        return set()
    model = type(objs[0])
    meta = model._meta
    fields = [field for field in meta.concrete_fields
              if not (field is meta.auto_field and objs[0].pk is None) and not field.generated]
    returned = [meta.get_field(name) for name in returning] if returning else [meta.pk]
    batch = connection.ops.bulk_batch_size(fields, objs)
    written = set()
    # QuerySet._insert is the step of bulk_create that takes both an ON CONFLICT and RETURNING
    # (bulk_create itself refuses to return rows it may have skipped); it is also how PostgreSQL
    # gets one UNNEST of arrays rather than thousands of parameters (a VALUES list of 500 rows
    # measured 150 ms a batch).
    for start in range(0, len(objs), batch):
        rows = model._base_manager._insert(objs[start:start + batch], fields=fields, returning_fields=returned,
                                           on_conflict=OnConflict.IGNORE)
        # One object goes in as a single-row INSERT, whose skipped row comes back as None.
        written.update(tuple(row) if returning else row[0] for row in rows if row is not None)
    return written
