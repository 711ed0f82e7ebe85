"""Claims with expiry: work that one process at a time may do, free again once its holder stops.

Every claim in the system is two columns: who holds it (`*_by`, or `worker` for a running run)
and until when (`*_until`), on the row of the work it guards (a run, a delivery) or on a row of
its own for work that has none (a cleanup target's lease, which exists only while held). The same four steps serve
every kind of work:

- `take`: a conditional UPDATE of rows that are free or whose claim lapsed, with the row count
  returned, so two processes can never both win the same row;
- `renew`: the holder pushes its expiry on before it lapses (at least twice per claim, so one
  failed renewal never loses the work);
- `release`: the holder gives the claim up when the work is done;
- `lapsed` / `is_stale`: a claim past its expiry belongs to a holder that stopped (killed, its
  machine gone, cut off from the database), and anyone may take the work over.

Holders are named by `holder_name()` everywhere: `place:pid:token`, where the token tells two
lives of one process id apart after a restart.
"""

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, models, transaction


def holder_name(place: str | None = None) -> str:
    """A new holder identity: `place:pid:token` (place: this host, or a name such as a Celery
    worker's node name that says more)."""
    return f"{place or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Claim:
    """How one kind of work is claimed: its two columns, how long a claim lasts, how often its
    holder renews it (None: never, the work is over well within `lasts`)."""

    holder_field: str
    until_field: str
    lasts: timedelta
    renew_every: timedelta | None = None

    def __post_init__(self) -> None:
        # The one timing rule every claim shares: a live holder renews at least twice per
        # claim, so a single slow or failed renewal never hands its work to someone else.
        if self.renew_every is not None and self.renew_every * 2 > self.lasts:
            raise ValueError(f"a claim lasting {self.lasts} must be renewed at most every {self.lasts / 2}, "
                             f"not every {self.renew_every}")

    def lapsed(self, now: datetime) -> models.Q:
        """Rows whose claim has run out (their holder stopped)."""
        return models.Q(**{f"{self.until_field}__lt": now})

    def unheld(self) -> models.Q:
        """Rows nobody holds (released, or never claimed)."""
        return models.Q(**{f"{self.until_field}__isnull": True})

    def live(self, now: datetime) -> models.Q:
        """Rows whose claim still holds."""
        return models.Q(**{f"{self.until_field}__gte": now})

    def expire_from(self, rows: models.QuerySet, *, claimed_at_field: str) -> int:
        """Give rows claimed by the release before this column existed (an empty expiry, still
        written by its processes during an upgrade) the expiry their claim had: `lasts` after
        `claimed_at_field`."""
        return rows.filter(**{f"{self.until_field}__isnull": True, f"{claimed_at_field}__isnull": False}).update(
            **{self.until_field: models.F(claimed_at_field) + self.lasts})

    def held_by(self, holder: str) -> models.Q:
        return models.Q(**{self.holder_field: holder})

    def is_stale(self, row: models.Model, *, now: datetime) -> bool:
        until = getattr(row, self.until_field)
        return until is not None and until < now

    def take(self, rows: models.QuerySet, *, holder: str, now: datetime, free: models.Q | None = None,
             **changes) -> int:
        """Claim those of `rows` that are `free` or whose claim lapsed; return how many were taken.

        `rows` narrows to the work meant (a pk, a status); `changes` are written in the same
        UPDATE, so the claim and what it means (a status, a new task id) are one step.
        """
        rows, values = self.taking(rows, holder=holder, now=now, free=free, **changes)
        return rows.update(**values)

    def taking(self, rows: models.QuerySet, *, holder, now, free: models.Q | None = None,
               **changes) -> tuple[models.QuerySet, dict]:
        """The UPDATE take() runs: the rows it may claim and the values it writes (for a statement
        compiled once, shared.compiled_updates; `holder` and `now` may be its Params)."""
        claimable = self.lapsed(now) if free is None else free | self.lapsed(now)
        return rows.filter(claimable), {self.holder_field: holder, self.until_field: now + self.lasts, **changes}

    def take_row(self, model: type[models.Model], *, key: dict, holder: str, now: datetime) -> bool:
        """Claim the one row of `model` with `key`, creating it when there is none yet.

        The insert is guarded by the key's unique constraint: of two processes creating the row
        at once, one wins and the other is told it lost.
        """
        if self.take(model.objects.filter(**key), holder=holder, now=now):
            return True
        try:
            with transaction.atomic():
                model.objects.create(**key, **{self.holder_field: holder, self.until_field: now + self.lasts})
        except IntegrityError:
            return False
        return True

    def renew(self, rows: models.QuerySet, *, holder: str, now: datetime) -> bool:
        """Extend our claim; False means it lapsed and someone else took the work."""
        return bool(rows.filter(self.held_by(holder)).update(**{self.until_field: now + self.lasts}))

    def release(self, rows: models.QuerySet, *, holder: str, **changes) -> int:
        """Give up our claim, writing `changes` in the same UPDATE; 0 when it was no longer ours."""
        rows, values = self.releasing(rows, holder=holder, **changes)
        return rows.update(**values)

    def releasing(self, rows: models.QuerySet, *, holder, **changes) -> tuple[models.QuerySet, dict]:
        """The UPDATE release() runs, as `taking` is take()'s."""
        return rows.filter(self.held_by(holder)), {self.until_field: None, **changes}
