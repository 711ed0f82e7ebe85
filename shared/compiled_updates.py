"""UPDATE statements built with the ORM once per database, then run many times with new values.

A worker writes two single-row UPDATEs for every run it executes: the start and the outcome.
Building each with the ORM (the filters, the claim's conditions, an EXISTS, the compile to SQL)
cost 1.3 ms and 0.8 ms of the worker's CPU, more than the task result Celery stores for the same
task, and most of what made the recorded path slower than a results-only task
(bench/bench_worker.py). Here the same ORM code builds the statement once, with a `Param` where
each value goes; every run binds its values, prepared by the field each one is written to or
compared with, as the ORM prepares a value it writes or compares for equality or order, and sends
the SQL as it was compiled: 0.2 ms. A Param in a filter is for such comparisons only: never None
there (the ORM would write IS NULL) and not for a pattern (`contains`, whose escaping the ORM
does when it compiles) or a list (`__in`).

A CompiledUpdate may also commit without waiting for the disk (`unflushed`), for writes whose
durability a later commit on the same connection provides: see `_CommitsUnflushed`.
"""

from collections.abc import Callable
from typing import Any

from django.db import connections as all_connections
from django.db import models, router, transaction
from django.db.models.expressions import Expression


class _Slot:
    """Where a Param's value goes in a compiled statement's parameters."""

    def __init__(self, name: str, field: models.Field) -> None:
        self.name, self.field = name, field

    def bound(self, values: dict, connection) -> Any:
        value = values[self.name]
        # As QuerySet.update() writes None: SQL NULL, also for a JSONField (not JSON null).
        return None if value is None else self.field.get_db_prep_value(value, connection, prepared=False)


class Param(Expression):
    """The value named `name` of a CompiledUpdate, bound each time it runs; `field` is the model
    field it is written to or compared with, whose database preparation it gets (a datetime's
    adapter on SQLite, a JSONField's encoder). One name may appear in several places."""

    def __init__(self, name: str, field: models.Field) -> None:
        super().__init__(output_field=field)
        self.name = name

    def as_sql(self, compiler, connection):
        return "%s", [_Slot(self.name, self.output_field)]


def param(model: type[models.Model], field_name: str, name: str | None = None) -> Param:
    """A Param for `model`'s field `field_name`, named after the field unless `name` is given."""
    return Param(name or field_name, model._meta.get_field(field_name))


class _CommitsUnflushed(Expression):
    """A condition that is always true and, evaluated on PostgreSQL, makes the transaction it runs
    in commit without waiting for its WAL to reach the disk (`set_config(..., is_local => true)`
    lasts until the transaction ends, and the commit reads the setting before it ends).

    For a statement run on its own in autocommit, so the setting covers that statement alone. Its
    change is seen by every other session at once; only a crash of PostgreSQL itself before the
    WAL writer flushes it (within 0.6 s) loses it, and any later commit that waits for the disk on
    the same server flushes it first, WAL being written in order. A flush cost 0.2 to 4.5 ms on
    this kind of machine, depending on what else writes to the server. SQLite in WAL mode with
    synchronous=NORMAL already commits without one.
    """

    output_field = models.BooleanField()

    def as_sql(self, compiler, connection):
        return "(set_config('synchronous_commit', 'off', true) = 'off')", []


class CompiledUpdate:
    """An UPDATE that `build` describes with the ORM, using Params for its values: `build()`
    returns the rows to update (a QuerySet) and the values to write (as `QuerySet.update` takes
    them). Calling it with the Params' values runs it and returns the number of rows updated."""

    def __init__(self, build: Callable[[], tuple[models.QuerySet, dict]], *, unflushed: bool = False) -> None:
        self.build = build
        self.unflushed = unflushed
        self._compiled: dict[tuple[str, bool], tuple[str, list]] = {}
        self._model: type[models.Model] | None = None

    def __call__(self, **values) -> int:
        if self._model is None:
            self._model = self.build()[0].model
        using = router.db_for_write(self._model)
        connection = all_connections[using]
        # Inside a transaction (atomic, or autocommit turned off) the setting would last until its
        # end and cover the caller's writes too.
        unflushed = self.unflushed and connection.vendor == "postgresql" and connection.get_autocommit()
        key = (using, unflushed)
        if key not in self._compiled:
            self._compiled[key] = self._compile(using, unflushed=unflushed)
        sql, params = self._compiled[key]
        bound = [item.bound(values, connection) if isinstance(item, _Slot) else item for item in params]
        with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
            cursor.execute(sql, bound)
            return cursor.rowcount

    def _compile(self, using: str, *, unflushed: bool) -> tuple[str, list]:
        rows, changes = self.build()
        if unflushed:
            rows = rows.filter(_CommitsUnflushed())
        # What QuerySet.update() runs, compiled instead of executed.
        query = rows.query.chain(models.sql.UpdateQuery)
        query.add_update_values(changes)
        query.annotations = {}
        sql, params = query.get_compiler(using).as_sql()
        if not sql or query.get_related_updates():
            raise ValueError("a CompiledUpdate writes one table, and writes something")
        return sql, list(params)
