"""A schedule's health from its ledger rows and the clock: every state and why, with any clock."""

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.health import Cause, Knobs, Seen, State, assess, knobs_of
from scheduler.models import SchedulePolicy, ScheduleRun

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE, SECOND = timedelta(minutes=1), timedelta(seconds=1)
KNOBS = Knobs(start_grace=timedelta(seconds=30), max_run=timedelta(minutes=5), failures_to_fail=3,
              successes_to_recover=2)


def run(ago: timedelta, status: str = "succeeded", **fields) -> ScheduleRun:
    return ScheduleRun(id=int(ago.total_seconds()), scheduled_for=NOW - ago, status=status, claimed_by="beat-1",
                       **fields)


def health(*runs, enabled=True, next_due=None, problem="", previous=State.UP, beat=True, workers=True):
    seen = Seen(enabled=enabled, next_due_at=next_due or NOW + MINUTE, problem=problem, runs=list(runs))
    return assess(seen, KNOBS, now=NOW, previous=previous, beat_alive=beat, workers_alive=workers)


def test_new_up_and_paused():
    assert health().state == State.NEW
    # Said so beside a ledger that lists a person's Run now runs, which health leaves out.
    assert health().why == "no scheduled run has finished yet (Run now runs do not count)"
    assert health(run(MINUTE)).state == State.UP
    assert health(run(MINUTE), enabled=False).state == State.PAUSED


@pytest.mark.parametrize(("runs", "state", "cause", "words"), [
    # A slot beat did not send: late for one grace, then down.
    ([run(40 * SECOND, "claimed")], State.LATE, Cause.NOT_SENT, "claimed by beat-1 but not sent"),
    ([run(90 * SECOND, "claimed")], State.DOWN, Cause.NOT_SENT, "not sent"),
    ([run(40 * SECOND, "sent")], State.LATE, Cause.NOT_STARTED, "sent but not started"),
    ([run(10 * MINUTE, "running", started_at=NOW - 6 * MINUTE, worker="celery@a")], State.DOWN, Cause.OVERRUN,
     "past its maximum run time of 5 min"),
    ([run(MINUTE, "missed", reason="beat was down")], State.DOWN, Cause.NOT_SENT, "was missed: beat was down"),
])
def test_late_and_down_say_why(runs, state, cause, words):
    found = health(*runs, run(2 * MINUTE))
    assert (found.state, found.cause) == (state, cause) and words in found.why


def test_a_slot_due_without_any_row_is_not_sent_by_beat_and_unknown_while_beat_is_down():
    due = NOW - 2 * MINUTE
    assert health(run(3 * MINUTE), next_due=due).state == State.DOWN
    found = health(run(3 * MINUTE), next_due=due, beat=False)
    assert (found.state, found.cause) == (State.UNKNOWN, Cause.BEAT_DOWN)


def test_not_started_names_missing_workers():
    assert "no worker is alive" in health(run(2 * MINUTE, "sent"), workers=False).why


def test_failing_after_the_threshold_and_back_up_after_enough_successes():
    failed = [run(k * MINUTE, "failed", error="Traceback...\nRuntimeError: disk full") for k in (1, 2)]
    assert health(*failed, run(3 * MINUTE)).state == State.UP
    found = health(*failed, run(3 * MINUTE, "failed"))
    assert found.state == State.FAILING and "RuntimeError: disk full" in found.why
    # One success is not enough to recover (successes_to_recover 2); two are.
    assert health(run(MINUTE), *failed, previous=State.FAILING).state == State.FAILING
    assert health(run(MINUTE), run(2 * MINUTE), previous=State.FAILING).state == State.UP


def test_defaults_come_from_the_period():
    hourly = knobs_of(SchedulePolicy(), timedelta(hours=1))
    # At most the task time limit (30 min by default), past which Celery kills the run anyway.
    assert (hourly.start_grace, hourly.max_run, hourly.failures_to_fail) == (timedelta(minutes=15),
                                                                              timedelta(minutes=30), 3)
    minutely = knobs_of(SchedulePolicy(), MINUTE)
    assert (minutely.start_grace, minutely.max_run) == (timedelta(seconds=30), MINUTE)
    assert knobs_of(SchedulePolicy(), timedelta(days=1)).failures_to_fail == 1
    own = knobs_of(SchedulePolicy(start_grace_seconds=5, failures_to_fail=7), MINUTE)
    assert (own.start_grace, own.failures_to_fail) == (timedelta(seconds=5), 7)
