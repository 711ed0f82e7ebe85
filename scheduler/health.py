"""The health of a schedule, derived from the run ledger and the clock (UTC), never from a copy of
the schedule: the slots beat claimed, sent, started and finished say what happened and why.

States: new, up, late, down, failing, paused, unknown. Late and down say why (`Cause`):

- not_sent: the slot came and went and beat did not send it (or recorded it missed);
- not_started: sent, but no worker started it (no worker alive, or a backlog);
- overrun: started, but still running past its maximum run time (hung or killed worker);
- failed: finished with an error (failing once it failed `failures_to_fail` times in a row).

Unknown is the product's own blindness: while no beat is alive nothing can be sent, so whether a
schedule would have run is unknown; one "beat down" alert says so instead of one per schedule.

`assess` is a pure function of what one query pass read, so every rule can be tested with any
clock; `Knobs` are the schedule's own settings (SchedulePolicy) or defaults from its period.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from scheduler.models import SchedulePolicy, ScheduleRun
from shared.display import last_line


class State:
    NEW = "new"
    UP = "up"
    LATE = "late"
    DOWN = "down"
    FAILING = "failing"
    PAUSED = "paused"
    UNKNOWN = "unknown"
    CHOICES = [(NEW, "New"), (UP, "Up"), (LATE, "Late"), (DOWN, "Down"), (FAILING, "Failing"), (PAUSED, "Paused"),
               (UNKNOWN, "Unknown")]
    # Worst first: how the home page orders schedules.
    SEVERITY = {DOWN: 0, FAILING: 1, LATE: 2, UNKNOWN: 3, NEW: 4, PAUSED: 5, UP: 6}
    BAD = {DOWN, FAILING}


class Cause:
    NOT_SENT = "not_sent"
    NOT_STARTED = "not_started"
    OVERRUN = "overrun"
    FAILED = "failed"
    RECOVERED = "recovered"
    BEAT_DOWN = "beat_down"
    CHOICES = [(NOT_SENT, "not sent (beat)"), (NOT_STARTED, "sent, not started (no worker or a backlog)"),
               (OVERRUN, "running past its maximum run time"), (FAILED, "failed"), (RECOVERED, "recovered"),
               (BEAT_DOWN, "beat is down")]


@dataclass(frozen=True)
class Knobs:
    start_grace: timedelta
    max_run: timedelta
    failures_to_fail: int
    successes_to_recover: int


def knobs_of(policy: SchedulePolicy, period: timedelta | None) -> Knobs:
    """The schedule's own settings, or defaults from its period: a start grace of half a period
    (at least 30 s, at most 15 min), a maximum run time of one period (at least a minute, at most
    the task time limit), failing after 1 failure for jobs twice a day or rarer and 3 for more
    frequent ones, back up after 1 success."""
    period = period or timedelta(hours=1)
    limit = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT or 3600)
    grace = min(max(period / 2, timedelta(seconds=30)), timedelta(minutes=15))
    max_run = min(max(period, timedelta(minutes=1)), limit)
    return Knobs(
        start_grace=_seconds(policy.start_grace_seconds) or grace,
        max_run=_seconds(policy.max_run_seconds) or max_run,
        failures_to_fail=policy.failures_to_fail or (1 if period >= timedelta(hours=12) else 3),
        successes_to_recover=policy.successes_to_recover or 1,
    )


def _seconds(value: int | None) -> timedelta | None:
    return timedelta(seconds=value) if value else None


@dataclass(frozen=True)
class Health:
    state: str
    cause: str = ""
    why: str = ""
    slot: datetime | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class Seen:
    """What one evaluation pass read about one schedule."""

    enabled: bool
    next_due_at: datetime | None
    problem: str  # why beat cannot compute its next run (ScheduleState.problem)
    # Its newest scheduled and catch-up runs, newest first (manual runs and overlap skips left
    # out: a person's "run now" or a skip is not the schedule's health).
    runs: list[ScheduleRun]


def assess(seen: Seen, knobs: Knobs, *, now: datetime, previous: str, beat_alive: bool,
           workers_alive: bool) -> Health:
    if not seen.enabled:
        return Health(State.PAUSED, why="the schedule is disabled")
    pending = _pending(seen, knobs, now=now, beat_alive=beat_alive, workers_alive=workers_alive)
    if pending is not None:
        return pending
    finished = [run for run in seen.runs if run.status in ScheduleRun.FINISHED]
    if not finished:
        return Health(State.NEW, why="no scheduled run has finished yet (Run now runs do not count)")
    newest = finished[0]
    if newest.status in (ScheduleRun.Status.MISSED, ScheduleRun.Status.NOT_ENQUEUED):
        return Health(State.DOWN, Cause.NOT_SENT, f"the run due {_at(newest.scheduled_for)} was "
                      f"{newest.get_status_display().lower()}: {newest.reason}", newest.scheduled_for, newest.id)
    failures = _streak(finished, ScheduleRun.Status.FAILED)
    if failures >= knobs.failures_to_fail:
        error = last_line(newest.error, when_empty="no error recorded")
        return Health(State.FAILING, Cause.FAILED, f"{failures} failed run(s) in a row; last due "
                      f"{_at(newest.scheduled_for)}: {error}", newest.scheduled_for, newest.id)
    if failures:
        # Failed, but fewer times than make it failing: still up, saying so.
        return Health(State.FAILING if previous == State.FAILING else State.UP, Cause.FAILED,
                      f"failed {failures} of {knobs.failures_to_fail} time(s) before it counts as failing",
                      newest.scheduled_for, newest.id)
    successes = _streak(finished, ScheduleRun.Status.SUCCEEDED)
    if previous in State.BAD and successes < knobs.successes_to_recover:
        return Health(previous, Cause.RECOVERED, f"{successes} of {knobs.successes_to_recover} successful run(s) "
                      "needed to count as recovered", newest.scheduled_for, newest.id)
    return Health(State.UP, why=f"last run due {_at(newest.scheduled_for)} succeeded", slot=newest.scheduled_for,
                  run_id=newest.id)


def _pending(seen: Seen, knobs: Knobs, *, now: datetime, beat_alive: bool, workers_alive: bool) -> Health | None:
    """Late or down for the oldest run (or due slot) not done in time; None when all is in time."""
    for run in reversed(seen.runs):
        if run.status == ScheduleRun.Status.RUNNING and run.started_at and now - run.started_at > knobs.max_run:
            return Health(State.DOWN, Cause.OVERRUN, f"the run due {_at(run.scheduled_for)} has been running on "
                          f"{run.worker} since {_at(run.started_at)}, past its maximum run time of "
                          f"{_span(knobs.max_run)} (hung, or its worker was killed)", run.scheduled_for, run.id)
        overdue = now - run.scheduled_for - knobs.start_grace
        if run.status == ScheduleRun.Status.SENT and overdue > timedelta(0):
            backlog = ("no worker is alive" if not workers_alive
                       else "no worker took it (busy, or not reading its queue)")
            return _late_or_down(Cause.NOT_STARTED, overdue, knobs, run.scheduled_for, run.id,
                                 f"the run due {_at(run.scheduled_for)} was sent but not started: {backlog}")
        if run.status == ScheduleRun.Status.CLAIMED and overdue > timedelta(0):
            if not beat_alive:
                return Health(State.UNKNOWN, Cause.BEAT_DOWN, "beat is down: its claimed runs are not sent",
                              run.scheduled_for, run.id)
            return _late_or_down(Cause.NOT_SENT, overdue, knobs, run.scheduled_for, run.id,
                                 f"the run due {_at(run.scheduled_for)} was claimed by {run.claimed_by} but not sent")
    if seen.problem:
        return Health(State.DOWN, Cause.NOT_SENT, f"beat cannot compute its next run: {seen.problem}")
    if seen.next_due_at is not None and now - seen.next_due_at > knobs.start_grace:
        if not beat_alive:
            return Health(State.UNKNOWN, Cause.BEAT_DOWN, f"beat is down: the slot due {_at(seen.next_due_at)} "
                          "cannot be sent", seen.next_due_at)
        return _late_or_down(Cause.NOT_SENT, now - seen.next_due_at - knobs.start_grace, knobs, seen.next_due_at,
                             None, f"the slot due {_at(seen.next_due_at)} was not sent by beat")
    return None


def _late_or_down(cause: str, overdue: timedelta, knobs: Knobs, slot: datetime, run_id: int | None,
                  why: str) -> Health:
    # Late for one more grace past the start grace, then down: a short hiccup warns, a real stop alerts.
    state = State.DOWN if overdue > knobs.start_grace else State.LATE
    return Health(state, cause, why, slot, run_id)


def _streak(finished: list[ScheduleRun], status: str) -> int:
    count = 0
    for run in finished:
        if run.status != status:
            break
        count += 1
    return count


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _span(length: timedelta) -> str:
    seconds = int(length.total_seconds())
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"
