"""Real beat and worker processes, under a faked clock, through New York's fall-back hour.

On 1 November 2026 New York's clocks go from 02:00 EDT back to 01:00 EST (06:00 UTC), so
01:00-02:00 comes twice. The clock starts at 00:45 EDT and runs 120 times as fast as the real
one, a faked minute every half second, to past 01:30 EST.

Beat takes the schedules' first slots from when it starts (they were saved on the real clock,
after the faked one), so it must be looping before the first pass's 01:30 EDT: from 00:45 EDT that
leaves it 22 real seconds to start, where from 01:15 EDT it had 7.5. The first pass's 01:00 EDT is
a slot of the wildcard only if beat was quick to start, so the wildcard is read from 01:15 EDT on.
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from scheduler.models import ScheduleRun, ScheduleState
from tests.builders import crontab_task
from tests.e2e.faked_clock import FakedClock, libfaketime_or_skip
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.tasks import executions
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NEW_YORK = ZoneInfo("America/New_York")
SPEED = 120
START = datetime(2026, 11, 1, 0, 45, tzinfo=NEW_YORK)  # 04:45 UTC, 45 faked minutes before 01:30 EDT
# The wildcard's slots read from here: after its 01:00 EDT, which beat may have started too late for.
WILDCARD_FROM = datetime(2026, 11, 1, 1, 15, tzinfo=NEW_YORK)  # 01:15 EDT, 05:15 UTC


def slot_recording_crontab(name: str, cron: str, notes):
    return crontab_task(name, cron, zone=NEW_YORK.key, task="tests.e2e.tasks.record_slot", args=f'["{notes}"]')


def walls(runs) -> list[str]:
    """The runs' slots as New York's wall clock read them, oldest first."""
    slots = runs.order_by("scheduled_for").values_list("scheduled_for", flat=True)
    return [slot.astimezone(NEW_YORK).isoformat() for slot in slots]


def test_through_the_repeated_hour_a_fixed_time_runs_once_and_a_wildcard_in_both_passes(
    start_process, app_env, tmp_path
):
    clock = FakedClock(libfaketime_or_skip(), start=START.astimezone(UTC), speed=SPEED)
    notes = tmp_path / "slots.txt"
    fixed = slot_recording_crontab("daily at 01:30", "30 1 * * *", notes)
    wildcard = slot_recording_crontab("every half hour", "*/30 * * * *", notes)
    start_process("worker", worker_argv("--include", "tests.e2e.tasks"), **app_env, **clock.env())
    start_process("beat", celery_argv("beat"), **app_env, **clock.env())

    # A schedule made during the second pass must not run for the first pass's 01:30 EDT.
    second_pass = datetime(2026, 11, 1, 1, 10, tzinfo=NEW_YORK, fold=1)  # 01:10 EST, 06:10 UTC
    wait_until(lambda: clock.now() >= second_pass, timeout=120, what="the faked clock to reach 01:10 EST")
    made_late = slot_recording_crontab("daily at 01:30, made at 01:10 EST", "30 1 * * *", notes)

    last_pass = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=1)  # 01:30 EST, 06:30 UTC
    # Beat claims every schedule due by then in one transaction: once the wildcard's last slot
    # ran, a second 01:30 of the fixed schedule would be in the ledger too.
    wait_until(
        lambda: ScheduleRun.objects.filter(schedule=wildcard, scheduled_for=last_pass, status="succeeded").exists(),
        timeout=90,
        what=lambda: (
            f"the run for 01:30 EST to succeed (faked clock at {clock.now():%H:%M} UTC; "
            f"ledger: {list(ScheduleRun.objects.values_list('schedule_name', 'scheduled_for', 'status'))})"
        ),
    )

    assert walls(ScheduleRun.objects.filter(schedule=fixed)) == ["2026-11-01T01:30:00-04:00"]
    assert walls(ScheduleRun.objects.filter(schedule=wildcard, scheduled_for__gte=WILDCARD_FROM,
                                            scheduled_for__lte=last_pass)) == [
        "2026-11-01T01:30:00-04:00",  # first pass
        "2026-11-01T01:00:00-05:00",  # second pass
        "2026-11-01T01:30:00-05:00",
    ]
    assert walls(ScheduleRun.objects.filter(schedule=made_late)) == []
    # Both fixed schedules' next run is the next day's 01:30: the first pass's is not replayed.
    next_due = ScheduleState.objects.filter(task__in=[fixed, made_late]).values_list("next_due_at", flat=True)
    assert {due.astimezone(NEW_YORK).isoformat() for due in next_due} == {"2026-11-02T01:30:00-05:00"}
    runs = ScheduleRun.objects.all()
    assert set(runs.values_list("status", flat=True)) == {"succeeded"}
    # Each run executed once, for its own slot.
    executed = executions(notes)
    assert set(executed) == set(runs.values_list("task_id", flat=True)) and max(executed.values()) == 1
    recorded = dict(line.split() for line in notes.read_text().splitlines())
    assert all(recorded[run.task_id] == run.scheduled_for.isoformat() for run in runs)
