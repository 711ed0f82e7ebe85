"""An UPDATE compiled once writes what QuerySet.update() writes with the same values, every time."""

import contextlib
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler.models import ScheduleRun
from scheduler.worker import RUN_LEASE
from shared.compiled_updates import CompiledUpdate, param
from tests.builders import interval_task, ledger_run

pytestmark = pytest.mark.django_db

FIELDS = ("status", "worker", "lease_until", "started_at", "output", "error")


def started(rows, *, worker, now, output, error):
    return RUN_LEASE.taking(rows, holder=worker, now=now, free=RUN_LEASE.unheld(), status="running", started_at=now,
                            output=output, error=error)


class Counted:
    """`build`, counting how often it was called."""

    def __init__(self, build) -> None:
        self.build, self.calls = build, 0

    def __call__(self):
        self.calls += 1
        return self.build()


def test_a_compiled_update_writes_what_the_orm_writes_and_is_built_once():
    task = interval_task("heartbeat", timedelta(minutes=1))
    ours, theirs = (ledger_run(task, timezone.now() - timedelta(minutes=minutes), status="sent")
                    for minutes in (1, 2))
    build = Counted(lambda: started(ScheduleRun.objects.filter(id=param(ScheduleRun, "id")),
                                    worker=param(ScheduleRun, "worker"), now=param(ScheduleRun, "started_at", "now"),
                                    output=param(ScheduleRun, "output"), error=param(ScheduleRun, "error")))
    update = CompiledUpdate(build)
    for output in ({"rows": 1, "at": timezone.now()}, None, ["a", "b"]):
        ScheduleRun.objects.update(lease_until=None)  # free again
        now = timezone.now()
        values = {"worker": "celery@here:1:ab", "now": now, "output": output, "error": "it's 100% done"}
        assert update(id=ours.id, **values) == 1
        rows, changes = started(ScheduleRun.objects.filter(id=theirs.id), **values)
        assert rows.update(**changes) == 1
        written = {run.id: [getattr(run, name) for name in FIELDS] for run in ScheduleRun.objects.all()}
        assert written[ours.id] == written[theirs.id]
        assert written[ours.id][2] == now + RUN_LEASE.lasts and written[ours.id][3] == now
    # Built once to learn its table and once to compile, then only run.
    assert build.calls == 2
    assert update(id=theirs.id + ours.id + 1, worker="w", now=timezone.now(), output=None, error="") == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite commits without waiting for the disk")
@pytest.mark.django_db(transaction=True)
def test_an_unflushed_update_says_so_in_autocommit_and_never_inside_a_callers_transaction():
    run = ledger_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    update = CompiledUpdate(lambda: (ScheduleRun.objects.filter(id=param(ScheduleRun, "id")),
                                     {"error": param(ScheduleRun, "error")}), unflushed=True)
    for in_transaction in (False, True):
        around = transaction.atomic() if in_transaction else contextlib.nullcontext()
        with CaptureQueriesContext(connection) as queries, around:
            assert update(id=run.id, error=f"in a transaction: {in_transaction}") == 1
            with connection.cursor() as cursor:
                cursor.execute("SHOW synchronous_commit")
                assert cursor.fetchone()[0] == "on"
        (sql,) = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("UPDATE")]
        assert ("set_config('synchronous_commit'" in sql) is not in_transaction
    assert ScheduleRun.objects.get(id=run.id).error == "in a transaction: True"

