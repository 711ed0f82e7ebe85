"""Waits between tries of work that failed for now (a mail server's 4xx, a site's 5xx): one rule
for every retry the product makes through Celery, so no worker sleeps inside a task."""

import random


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """The wait before try `attempt` + 1: base * 2**attempt (capped), jittered over its upper
    half, so retries from many tasks spread out and none comes back sooner than half the wait.

    Celery's own retry_backoff jitters over the whole range, down to zero, and in whole seconds;
    that could spend every try inside a greylisting window.
    """
    delay = min(cap, base * 2 ** attempt)
    return random.uniform(delay / 2, delay)
