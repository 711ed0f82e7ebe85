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

from scheduler.beat import BURST_RUNS, CLAIM_AHEAD, CLAIM_AHEAD_MOST
from scheduler.models import ScheduleRun
from tests.builders import clocked_at
from tests.e2e.processes import celery_argv
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Enough for beat's burst horizon: with BURST_RUNS due within CLAIM_AHEAD_MOST (45 s) it claims
# that far ahead, not CLAIM_AHEAD (8 s). Beat then has some 45 s, not 8, to claim them all and the
# test to see the claims before the slot comes (past it, beat sends them, and holds none).
SCHEDULES = BURST_RUNS
# Far enough ahead that beat has synced every schedule before it claims them (the claims start
# CLAIM_AHEAD_MOST before the slot).
SLOT_IN = CLAIM_AHEAD_MOST + timedelta(seconds=10)


def test_sigterm_stops_beat_at_once_and_gives_back_every_run_claimed_ahead(start_process, app_env, tmp_path):
    assert CLAIM_AHEAD_MOST >= CLAIM_AHEAD + timedelta(seconds=30)
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
