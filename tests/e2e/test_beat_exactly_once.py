"""Real beats against a private Redis: every slot goes out once, whatever happens to beat."""

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduler.beat import FULL_SYNC_EVERY_SECONDS
from scheduler.models import BeatHeartbeat, ScheduleRun
from tests.builders import interval_every, interval_task, with_policy
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.tasks import executions
from tests.e2e.waiting import beat_sees_paused, runs_settled, wait_until
from wiring.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = worker_argv("--include", "tests.e2e.tasks", "--concurrency", "2")
# How long beat may take to act on an edit the database trigger told it of. Well past a busy
# machine's slow tick (beat loops at least every second), and well short of the full comparison
# of every schedule that beat also runs every FULL_SYNC_EVERY_SECONDS (60 s), which would apply an
# edit the triggers missed and so hide a broken trigger.
EDIT_SEEN_SECONDS = 30


def slot_recording_schedule(name: str, notes, *, every_seconds: int) -> PeriodicTask:
    return interval_task(name, timedelta(seconds=every_seconds), task="tests.e2e.tasks.record_slot",
                         args=f'["{notes}"]')


def test_two_beats_together_send_every_slot_exactly_once(start_process, app_env, tmp_path):
    notes = tmp_path / "slots.txt"
    schedules = [slot_recording_schedule(f"every second {i}", notes, every_seconds=1) for i in range(5)]
    start_process("worker", WORKER, **app_env)
    beats = [start_process(name, celery_argv("beat", "--pidfile", str(tmp_path / f"{name}.pid")), **app_env)
             for name in ("beat-1", "beat-2")]

    wait_until(lambda: BeatHeartbeat.objects.count() == 2, timeout=60, what="both beats looping")
    runs = ScheduleRun.objects.filter(schedule__in=schedules)
    succeeded = runs.filter(status="succeeded")
    # Both beats claim and send side by side until the schedules ran ten times each, on average.
    wait_until(lambda: succeeded.count() >= 5 * 10, timeout=90,
               what=lambda: f"50 runs to succeed ({succeeded.count()} did)")
    PeriodicTask.objects.filter(id__in=[s.id for s in schedules]).update(enabled=False)
    wait_until(lambda: runs_settled(runs), timeout=60, what="every run finished")

    outcomes = Counter(runs.values_list("status", flat=True))
    assert outcomes["succeeded"] == runs.count() >= 5 * 10, (outcomes, set(runs.exclude(
        status="succeeded").values_list("status", "reason", "error")))
    # Each slot ran once, and every slot the ledger holds is one a worker executed.
    executed = executions(notes)
    assert set(executed) == set(runs.values_list("task_id", flat=True))
    assert max(executed.values()) == 1
    for schedule in schedules:
        slots = sorted(runs.filter(schedule=schedule).values_list("scheduled_for", flat=True))
        # No gap: one slot a second from the first to the last.
        assert all(b - a == timedelta(seconds=1) for a, b in zip(slots, slots[1:], strict=False))
    # Both beats looped before the window and were still running after it. Which one claims a
    # slot is a race either may win: on SQLite the first to claim a few seconds ahead can win
    # every slot, so who claimed is not asserted.
    assert all(beat.is_running() for beat in beats)


def test_a_beat_killed_between_claim_and_publish_loses_nothing_and_sends_nothing_twice(
    start_process, app_env, tmp_path
):
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    env = {**app_env, "REDIS_URL": redis.url}
    notes = tmp_path / "slots.txt"
    schedule = slot_recording_schedule("every 2 s", notes, every_seconds=2)
    with_policy(schedule, starting_deadline_seconds=600, missed_runs="each", catch_up_limit=100)
    runs = ScheduleRun.objects.filter(schedule=schedule)
    try:
        start_process("worker", WORKER, **env)
        beat = start_process("beat-1", celery_argv("beat", "--pidfile", str(tmp_path / "beat-1.pid")), **env)
        wait_until(lambda: runs.filter(status="succeeded").exists(), timeout=60, what="a first run")

        # Redis goes away: beat claims the next slot in the ledger but cannot publish it. (What it
        # had claimed further ahead it gives back, to be claimed afresh once Redis answers.)
        redis.stop()
        beat.wait_for_output("could not send", timeout=30)
        beat.signal_group(signal.SIGKILL)
        beat.process.wait(timeout=10)
        stranded = runs.filter(status="claimed").order_by("scheduled_for").first()
        assert stranded is not None, "the run beat failed to send is left claimed"

        redis.start()
        start_process("beat-2", celery_argv("beat", "--pidfile", str(tmp_path / "beat-2.pid")), **env)
        wait_until(lambda: runs.get(id=stranded.id).status == "succeeded", timeout=90,
                   what=lambda: f"the stranded run to succeed (it is {runs.get(id=stranded.id).status})")
        PeriodicTask.objects.filter(id=schedule.id).update(enabled=False)
        wait_until(lambda: runs_settled(runs), timeout=60, what="every run finished")
    finally:
        redis.stop()

    executed = executions(notes)
    # The new beat sent the stranded run under a fresh task id, and it ran once.
    resent = runs.get(id=stranded.id)
    assert resent.task_id != stranded.task_id and executed[resent.task_id] == 1
    assert max(executed.values()) == 1
    assert set(executed) == set(runs.filter(status="succeeded").values_list("task_id", flat=True))
    # Runs the killed beat had claimed ahead are sent by the new beat, or, once the test paused
    # the schedule, recorded as not enqueued for that reason; none is left hanging.
    unsent = runs.exclude(status__in=["succeeded", "missed"])
    assert all(run.status == "not_enqueued" and run.reason.endswith("the schedule was disabled since.")
               for run in unsent)


def test_an_edit_by_queryset_update_takes_effect_before_the_full_sync(start_process, app_env, tmp_path):
    assert EDIT_SEEN_SECONDS <= FULL_SYNC_EVERY_SECONDS / 2
    notes = tmp_path / "slots.txt"
    schedule = slot_recording_schedule("every second", notes, every_seconds=1)
    start_process("worker", WORKER, **app_env)
    start_process("beat", celery_argv("beat"), **app_env)
    beat_started = time.monotonic()
    runs = ScheduleRun.objects.filter(schedule=schedule)
    wait_until(lambda: runs.filter(status="succeeded").exists(), timeout=60, what="a first run")

    # No signal fires for QuerySet.update; the database trigger still tells beat.
    PeriodicTask.objects.filter(id=schedule.id).update(enabled=False)
    paused = time.monotonic()
    sent = runs.exclude(status="claimed")
    wait_until(lambda: beat_sees_paused(schedule), timeout=EDIT_SEEN_SECONDS, what="beat to see the pause")
    # Beat's first full sync was when it started, its next one FULL_SYNC_EVERY_SECONDS later: if
    # the first run took long enough, that one may be what applied the pause. The re-enabling
    # below is then the check of the trigger: beat synced for the pause (just now), so its next
    # full sync is a minute away.
    print(f"the pause was made {paused - beat_started:.1f} s after beat started, seen "
          f"{time.monotonic() - paused:.1f} s after it was made")
    paused_at = sent.count()
    # The runs beat had claimed ahead come due over the next seconds, each withdrawn when it does.
    wait_until(lambda: not runs.filter(status="claimed").exists(), timeout=60,
               what="the runs claimed ahead to be withdrawn")
    assert sent.count() == paused_at
    # What beat had claimed ahead for the paused schedule was withdrawn, not sent.
    assert not runs.filter(status="claimed").exists()

    slower = interval_every(timedelta(seconds=3))
    re_enabled_at = timezone.now()
    # Beat synced on seeing the pause, a few seconds ago (the withdrawals take about CLAIM_AHEAD):
    # its next full sync is a minute after that, past this wait.
    PeriodicTask.objects.filter(id=schedule.id).update(enabled=True, interval=slower)
    wait_until(lambda: sent.count() > paused_at, timeout=EDIT_SEEN_SECONDS,
               what=f"runs again within {EDIT_SEEN_SECONDS} s of re-enabling")
    wait_until(lambda: runs.filter(scheduled_for__gt=re_enabled_at).count() >= 2, timeout=60,
               what="two slots at the new interval")
    newest = list(runs.order_by("-scheduled_for").values_list("scheduled_for", flat=True)[:3])
    assert newest[0] - newest[1] == timedelta(seconds=3)
