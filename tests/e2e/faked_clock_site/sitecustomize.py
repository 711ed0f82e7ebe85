"""Imported at start-up by every Python process started under tests/e2e/faked_clock.py.

With libfaketime's monotonic clock left real, Python's time.sleep fails with EINVAL (it sleeps
with clock_nanosleep until a monotonic deadline, which libfaketime 0.9.10 mistranslates). The
same sleep through select() works, and libfaketime shortens it to the faked clock's speed, so a
beat sleeping one second sleeps one faked second.
"""

import select
import time


def _sleep(seconds: float) -> None:
    select.select([], [], [], seconds)


time.sleep = _sleep
