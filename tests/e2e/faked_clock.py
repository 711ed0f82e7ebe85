"""A faked wall clock for the real processes an end-to-end test starts: libfaketime, from
Debian (`apt-get install faketime libfaketime`), preloaded into each of them.

Every process is given the same clock: one start time and speed, and each process's start-at
time computed from how long after the clock's start it was started, since libfaketime starts
a process's clock when the process starts. The monotonic clock stays real (see
faked_clock_site/sitecustomize.py). Redis is not faked: run it as usual, outside the clock.
"""

import glob
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parent / "faked_clock_site"


def libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def libfaketime_or_skip() -> str:
    """libfaketime's path; without it the test is skipped, or fails when REQUIRE_FAKETIME=1 (CI)."""
    library = libfaketime()
    if library is None:
        message = "libfaketime not installed: apt-get install faketime libfaketime"
        if os.environ.get("REQUIRE_FAKETIME") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return library


class FakedClock:
    """A wall clock reading `start` (UTC) now and running `speed` times as fast as the real one."""

    def __init__(self, library: str, *, start: datetime, speed: int) -> None:
        self.library, self.start, self.speed = library, start, speed
        self.started = time.time()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.started) * self.speed)

    def env(self) -> dict[str, str]:
        """What a process started now needs to read this clock."""
        # Whole seconds are all libfaketime reads: wait for the next one rather than start up
        # to a faked second behind the others.
        late = self.now().microsecond / 1e6
        time.sleep((1 - late) / self.speed)
        start_at = (self.now() + timedelta(milliseconds=500)).replace(microsecond=0)
        return {
            "LD_PRELOAD": self.library,
            # libfaketime reads its start-at time in the process's local time.
            "TZ": "UTC",
            "FAKETIME": f"@{start_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} x{self.speed}",
            # With the monotonic clock faked too, every wait on a lock or event with a timeout
            # hangs (libfaketime 0.9.10 does not see the waits Python 3.11 makes).
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])),
        }
