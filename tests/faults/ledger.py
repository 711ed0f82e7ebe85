"""The fault suite's view of one site's database: its probe schedules and their ledger rows.

The same functions run in the test process (the test's own database: this module is the site)
and, through `manage.py shell`, against a database the test process has no connection to (the
private PostgreSQL cluster of the outage scenario): `RemoteSite` below.
"""

import json
from datetime import timedelta

import psycopg
from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleRun
from tests.builders import interval_task, with_policy
from tests.conftest import run_manage, subprocess_env

PROBE = "tests.faults.tasks.probe"
UNSETTLED = (ScheduleRun.Status.CLAIMED, ScheduleRun.Status.SENT, ScheduleRun.Status.RUNNING)


def probe_schedules(names: list[str], *, every: float, log: str, seconds: float = 0.0, queue: str | None = None,
                    start_grace: int = 5) -> None:
    """One schedule of the probe task per name, every `every` seconds, each run taking `seconds`."""
    for name in names:
        task = interval_task(name, timedelta(seconds=every), task=PROBE, args=json.dumps([log, seconds]),
                             queue=queue)
        # Health (and what reads it) looks at a run this soon after its slot, not half a minute.
        with_policy(task, start_grace_seconds=start_grace)


def pause(names: list[str]) -> None:
    PeriodicTask.objects.filter(name__in=names).update(enabled=False)


def ledger(names: list[str]) -> list[dict]:
    """The ledger rows of the schedules `names`, oldest slot first, as plain values."""
    rows = ScheduleRun.objects.filter(schedule_name__in=names).order_by("scheduled_for", "id")
    return [{**row, "scheduled_for": row["scheduled_for"].isoformat()} for row in rows.values(
        *LEDGER_COLUMNS)]


def counts(names: list[str]) -> dict:
    """How many runs of `names` succeeded, and how many are not settled yet (claimed, sent, running)."""
    runs = ScheduleRun.objects.filter(schedule_name__in=names)
    return {"succeeded": runs.filter(status=ScheduleRun.Status.SUCCEEDED).count(),
            "unsettled": runs.filter(status__in=UNSETTLED).count()}


LEDGER_COLUMNS = ("id", "schedule_name", "scheduled_for", "kind", "status", "reason", "error", "task_id", "claimed_by")


# On the test's own database, this module itself is the site (`from tests.faults import ledger`).
class RemoteSite:
    """The functions above on the PostgreSQL database of `env`'s DATABASE_URL: the writes
    through `manage.py shell` (the project's own code), the readings in SQL (psycopg), which
    are polled every second and cost no Django start-up."""

    def __init__(self, env: dict) -> None:
        self.env = subprocess_env(**env)
        self.url = env["DATABASE_URL"]

    def _manage(self, name: str, *args, **kwargs):
        code = (f"import json; from tests.faults import ledger; "
                f"print('RESULT', json.dumps(ledger.{name}(*{args!r}, **{kwargs!r})))")
        done = run_manage("shell", "-c", code, env=self.env, timeout=60)
        results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not results:
            raise RuntimeError(f"ledger.{name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return json.loads(results[-1].removeprefix("RESULT "))

    def probe_schedules(self, names: list[str], **kwargs) -> None:
        self._manage("probe_schedules", names, **kwargs)

    def pause(self, names: list[str]) -> None:
        self._manage("pause", names)

    def _select(self, sql: str, names: list[str]) -> list[tuple]:
        with psycopg.connect(self.url, connect_timeout=5) as db:
            return db.execute(sql, [names]).fetchall()

    def ledger(self, names: list[str]) -> list[dict]:
        rows = self._select(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM scheduler_schedulerun "
                            "WHERE schedule_name = ANY(%s) ORDER BY scheduled_for, id", names)
        return [{**dict(zip(LEDGER_COLUMNS, row, strict=True)), "scheduled_for": row[2].isoformat()} for row in rows]

    def counts(self, names: list[str]) -> dict:
        [(succeeded, unsettled)] = self._select(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), "
            f"count(*) FILTER (WHERE status IN ({', '.join(repr(str(s)) for s in UNSETTLED)})) "
            "FROM scheduler_schedulerun WHERE schedule_name = ANY(%s)", names)
        return {"succeeded": succeeded, "unsettled": unsettled}
