"""What apps declare for the system to pick up, and the one finder that picks it up.

Each app may have a `declarations.py` holding any of these lists:

- `DEFAULT_SCHEDULES = [DefaultSchedule(...), ...]`: schedules the system seeds for itself;
- `RETENTION_TARGETS = [RetentionTarget(...), ...]`: what the cleanup engine may remove;
- `SEEDS = [Seed(...), ...]`: rows `prepare` makes sure of (policies, a default report...);
- `SCHEDULE_INLINES = ["app.admin.SomeInline", ...]`: a one-per-schedule row of the app shown
  on each schedule's admin page (monitoring's alert settings);
- `SCHEDULE_ARGUMENT_FORMS = ["app.admin_forms.SomeFields", ...]`: the short form of one task's
  keyword arguments on a schedule's page (scheduler.admin_arguments.TaskArgumentsForm; the jobs'
  URL and method, command and arguments).

So a new app adds its own by declaring them, never by editing a central list, and nothing here
knows which apps exist.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module

from django.apps import apps
from django.db import models
from django.utils.module_loading import module_has_submodule

DECLARATIONS_MODULE = "declarations"


def declared_in_apps(attribute: str) -> list:
    """Every installed app's `declarations.<attribute>`, in INSTALLED_APPS order."""
    declared = []
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, DECLARATIONS_MODULE):
            module = import_module(f"{app_config.name}.{DECLARATIONS_MODULE}")
            declared.extend(getattr(module, attribute, []))
    return declared


@dataclass(frozen=True)
class DefaultSchedule:
    """A schedule seeded once; afterwards the row is the admin's to edit (only `task` is code's)."""

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
    return declared_in_apps("DEFAULT_SCHEDULES")


@dataclass(frozen=True)
class RetentionTarget:
    """What may be removed from one table; the one batched engine (cleanup) serves every target."""

    key: str
    model: str  # "app_label.ModelName"
    description: str
    # Exactly one of these says when a row becomes removable:
    expiry_field: str | None = None  # ...once this moment has passed (sessions)
    age_field: str | None = None  # ...once older than the policy's max age
    # Keep-last-K counts per value of this field (e.g. per schedule name); None: over the table.
    group_field: str | None = None
    default_max_age_days: int | None = None
    default_keep_last: int | None = None
    # Rows never removed whatever their age (a source's baseline): a condition built when asked.
    kept: Callable[[], models.Q] | None = None

    def __post_init__(self) -> None:
        if (self.expiry_field is None) == (self.age_field is None):
            raise ValueError(f"retention target {self.key!r}: give exactly one of expiry_field or age_field")

    @property
    def model_class(self) -> type[models.Model]:
        return apps.get_model(self.model)

    @property
    def time_field(self) -> str:
        return self.expiry_field or self.age_field

    @property
    def newest_first(self) -> list[str]:
        """The order in which rows count as newest, for keep-last."""
        return [f"-{self.time_field}", "-pk"]

    def removable(self, *, max_age_days: int | None, now: datetime) -> models.Q | None:
        """The condition a row meets once it may go; None when nothing may go."""
        if self.expiry_field:
            condition = models.Q(**{f"{self.expiry_field}__lt": now})
        elif max_age_days is None:
            return None
        else:
            condition = models.Q(**{f"{self.age_field}__lt": now - timedelta(days=max_age_days)})
        return condition & ~self.kept() if self.kept else condition


def declared_retention_targets() -> list[RetentionTarget]:
    return declared_in_apps("RETENTION_TARGETS")


@dataclass(frozen=True)
class Seed:
    """Rows `prepare` makes sure of: `ensure()` creates what is missing, never changes what an
    admin edited, and returns (name, created) for each row it looked at."""

    what: str  # shown as "<what> 'name': created" by prepare
    ensure: Callable[[], list[tuple[str, bool]]]


def declared_seeds() -> list[Seed]:
    return declared_in_apps("SEEDS")
