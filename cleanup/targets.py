"""Retention targets: what may be removed from one table, declared once.

An app declares `RETENTION_TARGETS = [RetentionTarget(...), ...]` in its `retention.py`; the one
batched engine (cleanup/purge.py) serves every target, and each gets an editable policy.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.db import models

from scheduler.declarations import declared_in_apps


@dataclass(frozen=True)
class RetentionTarget:
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
            return models.Q(**{f"{self.expiry_field}__lt": now})
        if max_age_days is None:
            return None
        return models.Q(**{f"{self.age_field}__lt": now - timedelta(days=max_age_days)})


def retention_targets() -> dict[str, RetentionTarget]:
    return {target.key: target for target in declared_in_apps("retention", "RETENTION_TARGETS")}


def unknown_targets(keys) -> list[str]:
    known = retention_targets()
    return [key for key in keys if key not in known]
