"""A clock the test moves, put in place of a module's `time`."""

import time


class FakeClock:
    """`monotonic` reads `now`, which moves only when the test advances it or a `sleep` passes
    (noted in `slept`, not slept); anything else is the real `time` module's."""

    def __init__(self, now: float) -> None:
        self.now, self.slept = now, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str):
        return getattr(time, name)
