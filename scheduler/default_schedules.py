"""Schedules the system seeds for itself, declared by each app in its `schedules.py`.

An app declares `DEFAULT_SCHEDULES = [DefaultSchedule(...), ...]`; `schedules_seed` creates the
missing ones and leaves every existing row as an admin left it.
"""

from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

from django.apps import apps
from django.utils.module_loading import module_has_submodule


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
    declared = []
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "schedules"):
            module = import_module(f"{app_config.name}.schedules")
            declared.extend(getattr(module, "DEFAULT_SCHEDULES", []))
    return declared
