"""A beat stopped by SIGTERM while it holds thousands of runs claimed ahead of their slot: it
stops at once and gives every one of them back (issue 15.4), so the next beat claims them afresh
instead of waiting for their claims to lapse. Celery's own handler did the giving back inside the
signal handler, where it could wait for good on the connection's lock."""

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleRun
from tests.builders import clocked_at
from tests.e2e.processes import celery_argv
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SCHEDULES = 3000
# Far enough ahead that beat has synced every schedule before it claims them (CLAIM_AHEAD, 8 s,
# before the slot), and the claims are seen before their slot comes.
SLOT_IN = timedelta(seconds=30)


def test_sigterm_stops_beat_at_once_and_gives_back_every_run_claimed_ahead(start_process, app_env, tmp_path):
    slot = (timezone.now() + SLOT_IN).replace(microsecond=0)
    at = clocked_at(slot)
    PeriodicTask.objects.bulk_create([PeriodicTask(name=f"one-off {number}", task="scheduler.tasks.heartbeat",
                                                   clocked=at, one_off=True) for number in range(SCHEDULES)])
    beat = start_process("beat", celery_argv("beat", "--pidfile", str(tmp_path / "beat.pid")), **app_env)
    claimed = ScheduleRun.objects.filter(status=ScheduleRun.Status.CLAIMED)
    wait_until(lambda: claimed.count() == SCHEDULES, timeout=SLOT_IN.total_seconds(),
               what=lambda: f"{SCHEDULES} runs claimed ahead (claimed: {claimed.count()})")
    assert timezone.now() < slot, "the slot came before the claims were seen: nothing is held ahead any more"

    asked = time.monotonic()
    beat.signal_group(signal.SIGTERM)
    # A bound for a hang (the bug: forever), not a measure of speed; the note says how long it took.
    beat.process.wait(timeout=30)
    print(f"beat stopped {time.monotonic() - asked:.1f} s after SIGTERM, holding {SCHEDULES} claims")

    assert claimed.count() == 0
    assert f"beat: gave back {SCHEDULES} run(s) claimed ahead" in beat.output()
    assert ScheduleRun.objects.count() == 0  # given back: due again for the next beat, not sent
