import time
from collections.abc import Callable

from scheduler.models import ScheduleState


def wait_until(condition: Callable, *, timeout: float, what: str | Callable[[], str], every: float = 0.2):
    """Poll `condition` until it returns something truthy, and return that; fail after `timeout`.

    `what` names what was awaited in the failure message; a callable is asked at failure time,
    so the message can say what was found instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(every)


def runs_settled(runs) -> bool:
    """Whether none of `runs` (ledger rows) is still claimed, sent or running."""
    return not runs.filter(status__in=["claimed", "sent", "running"]).exists()


def beat_sees_paused(schedule) -> bool:
    """Whether beat has seen that `schedule` is disabled: its state row (beat's bookkeeping) holds
    no next due time any more, and from then on beat sends nothing of it."""
    return ScheduleState.objects.filter(task=schedule, next_due_at=None).exists()
