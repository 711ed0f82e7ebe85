import time
from collections.abc import Callable


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
