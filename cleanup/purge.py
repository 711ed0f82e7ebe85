"""The batched-delete engine: one loop for every retention target.

Rows are walked in primary-key order (keyset pagination: each batch starts after the last key
of the one before, so nothing is scanned twice, dead rows included). Each batch is deleted in
its own short transaction, so other writers wait milliseconds, not the whole purge; and by
key range with the removable condition applied again, so a row that changed since it was
listed (a session its user just extended) stays. Only keys are loaded, and the DELETE is issued
directly: no model instances, no per-row signals.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import models, transaction

from cleanup.targets import RetentionTarget


@dataclass
class PurgeProgress:
    matched: int = 0
    deleted: int = 0
    batches: int = 0
    stopped_on_budget: bool = False


class KeepNewest:
    """The newest K rows of each group, looked up when a batch first meets the group.

    One small indexed query per group, cached for the run: rows newer than those found stay
    newer, so a row protected at the start is the only kind that could need protecting.
    """

    def __init__(self, target: RetentionTarget, keep_last: int) -> None:
        self.target = target
        self.keep_last = keep_last
        self.newest: dict[object, set] = {}

    def protected(self, rows: list[tuple]) -> set:
        for group in {row[1] for row in rows} - self.newest.keys():
            rows_of_group = self.target.model_class._base_manager.order_by(*self.target.newest_first)
            if self.target.group_field:
                rows_of_group = rows_of_group.filter(**{self.target.group_field: group})
            self.newest[group] = set(rows_of_group.values_list("pk", flat=True)[: self.keep_last])
        return {row[0] for row in rows if row[0] in self.newest[row[1]]}


def purge_in_batches(
    *,
    removable: models.QuerySet,
    batch_size: int,
    deadline: float,
    dry_run: bool,
    keep: KeepNewest | None,
    after_batch: Callable[[PurgeProgress], bool],
) -> PurgeProgress:
    """Delete `removable` in batches until done, out of time, or `after_batch` says stop."""
    progress = PurgeProgress()
    group_field = keep.target.group_field if keep else None
    columns = ["pk", group_field] if group_field else ["pk"]
    last_key = None
    while True:
        if time.monotonic() >= deadline:
            progress.stopped_on_budget = True
            break
        page = removable.order_by("pk")
        if last_key is not None:
            page = page.filter(pk__gt=last_key)
        rows = [row if group_field else (row[0], None) for row in page.values_list(*columns)[:batch_size]]
        if not rows:
            break
        batch = removable.filter(pk__gt=last_key) if last_key is not None else removable
        batch = batch.filter(pk__lte=rows[-1][0])
        last_key = rows[-1][0]
        protected = keep.protected(rows) if keep else set()
        progress.matched += len(rows) - len(protected)
        if not dry_run:
            with transaction.atomic(using=removable.db):
                # _raw_delete: one DELETE statement, no instances loaded, no signals sent.
                progress.deleted += batch.exclude(pk__in=protected)._raw_delete(removable.db)
        progress.batches += 1
        if not after_batch(progress):
            break
    return progress
