"""Schedules the system seeds for itself, declared by each app in its `schedules.py`.

An app declares `DEFAULT_SCHEDULES = [DefaultSchedule(...), ...]`; `schedules_seed` creates the
missing ones and leaves every existing row as an admin left it.
"""

from dataclasses import dataclass
from datetime import timedelta

from scheduler.declarations import declared_in_apps


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    description: str
    every: timedelta | None = None
    crontab: str | None = None  # five fields: minute hour day-of-month month day-of-week
    # False when the job has nothing to work on until someone configures it; the description
    # then says what to configure.
    enabled: bool = True

    def __post_init__(self) -> None:
        if (self.every is None) == (self.crontab is None):
            raise ValueError(f"default schedule {self.name!r}: give exactly one of every or crontab")


def declared_default_schedules() -> list[DefaultSchedule]:
    return declared_in_apps("schedules", "DEFAULT_SCHEDULES")
