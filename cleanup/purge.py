"""The batched-delete engine: one loop for every retention target.

Rows go in slices of the target's time column (expiry or age), oldest first, each slice in its
own short transaction, so other writers wait milliseconds, not the whole purge. Slicing by the
time column follows its index, and, since rows are written in time order, the table's own
order: far fewer pages are rewritten per batch than walking a random key (sessions) would. Each
slice starts where the last one ended, so no slice scans rows already deleted (PostgreSQL
keeps dead index entries until vacuum). A run of equal times larger than a batch is walked by
primary key instead, so a batch stays bounded whatever the data.

Batch sizes adapt: each batch's DELETE is timed and the next batch grows or shrinks towards the
policy's target duration, so PostgreSQL takes large batches while SQLite, whose one writer
blocks every other, keeps them short. The condition is part of every DELETE, so a row that
changed since the slice was chosen (a session its user just extended) stays. Only keys are
loaded, and only where keep-last or SQLite (below) needs them; the DELETE is issued directly,
no model instances, no per-row signals.

On SQLite a slice spans several batches: its keys are loaded (read ahead, between the batches
of the slice before: _KeysAhead), sorted and deleted a batch at a time in key order. Time order
keeps the table and its time index sequential, but a random key (sessions) scatters each batch
over the whole key index, one page written per row; in key order each batch of the slice
rewrites only its own stretch of that index. Measured on 1,000,000 sessions, a batch of 5,000
then held the write lock 47 ms instead of 60.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial

from django.db import OperationalError, connections, models, transaction
from django.db.models.expressions import RawSQL

from cleanup.sqlite_turns import SQLiteTurns
from cleanup.targets import RetentionTarget

MIN_BATCH, MAX_BATCH = 100, 20_000
# On SQLite a batch stops here however fast it runs: its dirty pages stay in memory until it
# commits, and a site's writer waits out the whole batch. On 1,000,000 empty sessions, with
# batches of 10,000 the bench's probe waited 56 ms at most; with sessions of a real site's size
# (160-240 bytes) a batch of 10,000 held the lock 45-96 ms, often right after two of 5,000 had
# taken 25-35 ms and the size had doubled, and the probe's slowest operations waited for those.
# On 2026-12-02, with the slices' reads mended, batches of 8,000 held it 48 ms at the median but
# up to 88 ms (a writer waiting from its start then polls at 78 ms and again at 103: probe max
# 107 ms); with at most 6,000, 44 ms and at most 65-74 ms (probe max 83-87 ms), in no more time.
# Since a DELETE running long is stopped (_StopAfter), the bound matters on a fast machine only,
# where batches reach it well inside their target: on 2026-12-03 (bench_session_cleanup.py,
# three runs each, stock beside) 6,000 took 13.6-14.3 s, 1.87-1.95x stock, probe max 58-89 ms;
# 7,500, 12.2-12.4 s, 1.69-1.81x, 57-64 ms; 9,000, 12.1-12.3 s, 1.63-1.77x, but 81 ms in every
# run (holds past the 53 ms poll of a writer waiting since the batch began).
# It also keeps key lists far under SQLite's bound-variable limit where they go as parameters.
MAX_BATCH_SQLITE = 7_500
# Rows per slice on SQLite (see the module's docstring): a larger slice spreads each batch over
# more of the table's pages, a smaller one over more of a random key's index. 40,000 wrote the
# fewest pages on 1,000,000 sessions.
SQLITE_SLICE_ROWS = 40_000
# Rows read at a time ahead of their slice on SQLite (see _KeysAhead): about 10 ms, so a read
# fits in the gap a site writer is given after each batch.
SQLITE_READ_AHEAD_ROWS = 5_000
SIZE_STEP = 500
JSON_KEY_TYPES = {"CharField", "TextField", "AutoField", "BigAutoField", "IntegerField", "BigIntegerField"}


@dataclass
class PurgeProgress:
    matched: int = 0
    deleted: int = 0
    batches: int = 0
    stopped_on_budget: bool = False


class KeepNewest:
    """The newest K rows of each group, looked up when a slice first meets the group.

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


@dataclass
class BatchSizer:
    """Grows or shrinks the batch so each DELETE takes about `target_seconds` (None: fixed)."""

    size: int
    target_seconds: float | None
    max_size: int = MAX_BATCH

    def __post_init__(self) -> None:
        # The admin refuses a size below 1, but a row changed by hand could hold 0, which would
        # make every batch empty and the run spin until its budget.
        self.size = max(1, self.size)

    def record(self, rows: int, seconds: float) -> None:
        if self.target_seconds is None or rows < self.size // 2:
            return  # a short final slice says nothing about the rate
        wanted = self.size * self.target_seconds / max(seconds, 1e-4)
        # At most double or halve per step: one slow batch (a checkpoint, a burst of
        # traffic) should not swing the size wildly.
        size = int(min(self.max_size, max(MIN_BATCH, self.size // 2, min(wanted, self.size * 2))))
        # A few sizes, not any: where keys go as a list of parameters (PostgreSQL's keep-last),
        # each length is a statement of its own; on SQLite, whose Python driver caches 128 of
        # them, every size possible once filled the cache with large ones and cost about 50 MB.
        step = SIZE_STEP if size >= SIZE_STEP else MIN_BATCH
        self.size = max(MIN_BATCH, size - size % step)


def purge_in_batches(
    *,
    removable: models.QuerySet,
    time_field: str,
    sizer: BatchSizer,
    deadline: float,
    dry_run: bool,
    keep: KeepNewest | None,
    after_batch: Callable[[PurgeProgress], None],
    checkpoint: Callable[[PurgeProgress], bool] = lambda progress: True,
) -> PurgeProgress:
    """Delete `removable` slice by slice until done, out of time, or `checkpoint` says stop.

    `checkpoint` runs inside each batch's transaction, before its DELETE, for the run's own
    writes (its progress, its lease); False stops the run before that batch deletes anything.
    `after_batch` is told the progress after each batch.
    """
    progress = PurgeProgress()
    remove = _BatchRemover(removable, dry_run, keep, progress, checkpoint)
    sizer.max_size = min(sizer.max_size, remove.max_batch())
    sizer.size = min(sizer.size, sizer.max_size)

    def go_on_after(batches: Iterator[Callable[[], None]]) -> bool:
        """Run a slice's batches; False when the run must stop (time budget, or checkpoint)."""
        for index, batch in enumerate(batches):
            # Before each batch but the slice's first (checked when the slice was chosen): a
            # run whose last batch ends past its budget has still finished.
            if index and time.monotonic() >= deadline:
                progress.stopped_on_budget = True
                return False
            batch()
            if remove.stopped:
                return False
            after_batch(progress)
        return True

    with remove.taking_turns():
        for batches in remove.slices(time_field, sizer):
            if time.monotonic() >= deadline:
                progress.stopped_on_budget = True
                return progress
            if not go_on_after(batches):
                return progress
    return progress


def _slices(removable: models.QuerySet, time_field: str,
            rows_per_slice: Callable[[], int]) -> Iterator[models.QuerySet]:
    """`removable` in slices of its time column, oldest first, each sized when it is reached."""
    # Where the next slice starts: rows at or after this time (or strictly after, once a run of
    # equal times is done). Rebuilt from `removable` each time, so the SQL stays one bound.
    lower, lookup = None, "gte"
    while True:
        after = {} if lower is None else {lookup: lower}
        remaining = _within(removable, time_field, **after) if after else removable
        times = remaining.order_by(time_field).values_list(time_field, flat=True)
        # The first row's time, and the time of the row just past a full slice: the slice is
        # every row before that one.
        slice_rows = rows_per_slice()
        window = list(times[:1]) + list(times[slice_rows : slice_rows + 1])
        if not window:
            return
        first, last = window[0], window[-1] if len(window) > 1 else None
        if last is None:
            yield remaining  # a slice or less left: this slice is the last
            return
        if last == first:
            # A run of equal times larger than a slice: walk it by primary key.
            if (lower, lookup) == (first, "gt"):
                # Rows the database orders after this time but not equal to it (text written
                # by hand in another form, on SQLite): stop rather than spin on them.
                raise RuntimeError(f"no progress past {time_field}={first}: rows stored in an unexpected form")
            yield from _by_key(remaining.filter(**{time_field: first}), rows_per_slice)
            lower, lookup = first, "gt"
            continue
        yield _within(removable, time_field, **after, lt=last)
        lower, lookup = last, "gte"


def _within(removable: models.QuerySet, time_field: str, **bounds) -> models.QuerySet:
    """`removable` within these bounds of its time column (lookup: value), the bounds first.

    SQLite walks an index between the first lower and the first upper bound it finds on the
    column and only filters by the rest. After the removable condition's own bound (`expire_date
    < now`), every slice's read walked the index to now: 175 ms for 5,000 of 1,000,000 sessions
    instead of 2.5.
    """
    bounded = removable.model._base_manager.using(removable.db).filter(
        **{f"{time_field}__{lookup}": value for lookup, value in bounds.items()})
    return bounded & removable


def _by_key(rows: models.QuerySet, rows_per_slice: Callable[[], int]) -> Iterator[models.QuerySet]:
    """`rows` in slices of their primary key, in key order."""
    last_key = None
    while True:
        after = rows if last_key is None else rows.filter(pk__gt=last_key)
        keys = list(after.order_by("pk").values_list("pk", flat=True)[: rows_per_slice()])
        if not keys:
            return
        yield after.filter(pk__lte=keys[-1])
        last_key = keys[-1]


class _BatchRemover:
    """Deletes a slice a batch at a time, each batch in its own transaction, recording what it did.

    On SQLite the batches take turns with the site's writers (cleanup/sqlite_turns.py), and a
    slice goes by its keys: measured on 3.40, a range DELETE walking the very index it modifies
    took about three times as long as deleting the same rows by key.
    """

    def __init__(self, removable: models.QuerySet, dry_run: bool, keep: KeepNewest | None,
                 progress: PurgeProgress, checkpoint: Callable[[PurgeProgress], bool]) -> None:
        self.removable, self.dry_run, self.keep, self.progress = removable, dry_run, keep, progress
        self.checkpoint = checkpoint
        self.stopped = False  # the checkpoint said stop
        self.db = removable.db
        self.on_sqlite = connections[self.db].vendor == "sqlite"
        self.turns = SQLiteTurns(self.db) if self.on_sqlite else None
        self.ahead: _KeysAhead | None = None
        # Keys that JSON carries as the database stores them (text and integers, not UUIDs),
        # where SQLite was built with its JSON functions (3.38 and later always are).
        self.keys_as_json = (self.on_sqlite and connections[self.db].features.supports_json_field
                             and removable.model._meta.pk.get_internal_type() in JSON_KEY_TYPES)

    def slice_rows(self, batch_size: int) -> int:
        return max(batch_size, SQLITE_SLICE_ROWS) if self.on_sqlite else batch_size

    def max_batch(self) -> int:
        if not self.on_sqlite:
            return MAX_BATCH
        # Without JSON the keys go as parameters: within what SQLite allows, less the condition's.
        return MAX_BATCH_SQLITE if self.keys_as_json else connections[self.db].features.max_query_params - 10

    def slices(self, time_field: str, sizer: BatchSizer) -> Iterator[Iterator[Callable[[], None]]]:
        """Each slice's batches, one slice at a time. On SQLite the keys of the slice after are
        read while this one's are deleted, in the gaps the site's writers are given."""
        def rows_per_slice() -> int:
            return self.slice_rows(sizer.size)  # the size when the slice is reached: it adapts

        if not self.on_sqlite or self.keep:
            for rows in _slices(self.removable, time_field, rows_per_slice):
                yield self._batches_of(rows, sizer)
            return
        parts = _slices(self.removable, time_field, lambda: SQLITE_READ_AHEAD_ROWS)
        self.ahead = _KeysAhead(parts, self._keys_of, rows_per_slice)
        while (keys := self.ahead.next_slice()) is not None:
            yield self._batches_by_key(keys, sizer)

    def _batches_of(self, rows: models.QuerySet, sizer: BatchSizer) -> Iterator[Callable[[], None]]:
        """The batches that delete `rows`, one at a time: each is sized when its turn comes."""
        if not (self.keep or self.on_sqlite):
            yield partial(self._delete, rows, sizer)
            return
        if self.keep:
            group_field = self.keep.target.group_field
            found = list(rows.values_list("pk", group_field) if group_field else
                         ((pk, None) for pk in rows.values_list("pk", flat=True)))
            protected = self.keep.protected(found)
            keys = [row[0] for row in found if row[0] not in protected]
        else:
            keys = self._keys_of(rows)
        yield from self._batches_by_key(keys, sizer)

    def _batches_by_key(self, keys: list, sizer: BatchSizer) -> Iterator[Callable[[], None]]:
        """The batches that delete the rows with these keys, in key order."""
        keys = sorted(keys)
        if not keys:
            yield self._count_an_empty_batch
            return
        start = 0
        while start < len(keys):
            batch = keys[start : start + sizer.size]
            start += len(batch)
            # Exactly the rows looked at (and the condition again): a row that appeared in the
            # slice since then has not had its keep-last check.
            yield partial(self._delete_keys, batch, sizer)

    def _keys_of(self, rows: models.QuerySet) -> list:
        """The keys of `rows`. On SQLite they come back as one JSON array: a row per key, through
        Django, took twice as long (a second of every million sessions)."""
        if not self.keys_as_json:
            return list(rows.values_list("pk", flat=True))
        sql, params = rows.values_list("pk").query.sql_with_params()
        with connections[self.db].cursor() as cursor:
            cursor.execute(f"WITH slice(key) AS ({sql}) SELECT json_group_array(key) FROM slice", params)
            return json.loads(cursor.fetchone()[0])

    def _named(self, keys: list) -> models.Q:
        """The rows with these keys. On SQLite the keys go as one JSON parameter: as thousands of
        parameters, Django prepared each one and building a batch's SQL took longer than running it."""
        if self.keys_as_json:
            return models.Q(pk__in=RawSQL("SELECT value FROM json_each(%s)", [json.dumps(keys)]))
        return models.Q(pk__in=keys)

    def _delete_keys(self, keys: list, sizer: BatchSizer) -> None:
        """Delete the rows with these keys (and the condition again) as one batch, or, where it
        is stopped for running long (SQLite: see _delete), as two batches of half as many."""
        try:
            self._delete(self.removable.filter(self._named(keys)), sizer, keys=len(keys))
        except _StoppedLong:
            half = len(keys) // 2
            for part in (keys[:half], keys[half:]):
                if not self.stopped:
                    self._delete_keys(part, sizer)

    def _delete(self, batch: models.QuerySet, sizer: BatchSizer, *, keys: int | None = None) -> None:
        """Delete one batch; `keys` is how many keys it names, when it goes by key list.

        On SQLite a batch by key list whose DELETE runs past three quarters of the target
        duration is stopped and undone (_StoppedLong): a site writer waiting since it began tries
        the lock again at 53 and 78 ms, and a batch that held it 80-130 ms (its DELETE two to
        three times its usual time, now and then, at no particular point of a run) kept such a
        writer waiting 103 ms and more.
        """
        if self.dry_run:
            if not self.checkpoint(self.progress):
                self.stopped = True
                return
            self.progress.matched += keys if keys is not None else batch.count()
        else:
            if self.turns:
                self.turns.before_batch(self.ahead.read_some if self.ahead else None)
            asked_at = time.monotonic()
            # Not a batch of a few rows: halved again and again, it would never end on a stalled machine.
            stoppable = self.turns and sizer.target_seconds and (keys or 0) > MIN_BATCH
            stop = _StopAfter(self.db, sizer.target_seconds) if stoppable else None
            try:
                with transaction.atomic(using=self.db):
                    # Timed from the lock taken (SQLite's BEGIN IMMEDIATE, at the block's start) to
                    # the commit: the lock held is what a site writer waits for. Counting a wait for
                    # the site's own turn shrank the batches for nothing.
                    started = time.perf_counter()
                    # The run's own writes in the batch's transaction: on SQLite, written on their
                    # own between batches, they took the lock in the gap kept for the site's
                    # writers, and a writer whose poll fell on them waited through the next batch
                    # too (136-146 ms in bench_session_cleanup.py).
                    if not self.checkpoint(self.progress):
                        self.stopped = True
                        return
                    # _raw_delete: one DELETE statement, no instances loaded, no signals sent.
                    with stop or nullcontext():
                        deleted = batch._raw_delete(self.db)
            except OperationalError:
                if not (stop and stop.fired):
                    raise
                # Unfinished, it says only that the batch is too large: half the size next.
                sizer.record(keys, 2 * sizer.target_seconds)
                self.turns.after_commit(asked_at=asked_at)  # the lock let go: the site's turn first
                raise _StoppedLong from None
            # Sized by the keys tried: a row extended meanwhile cost the lookup all the same.
            sizer.record(keys if keys is not None else deleted, time.perf_counter() - started)
            self.progress.matched += deleted
            self.progress.deleted += deleted
            if self.turns:
                self.turns.after_commit(asked_at=asked_at)
        self.progress.batches += 1

    def _count_an_empty_batch(self) -> None:
        self.progress.batches += 1

    def taking_turns(self) -> AbstractContextManager:
        return self.turns or nullcontext()


class _StoppedLong(Exception):
    """A batch's DELETE was stopped for running long, and undone."""


class _StopAfter:
    """Around a statement on SQLite: stops it (SQLITE_INTERRUPT) once it has run for SHARE of
    `target_seconds`; `fired` tells our stop from any other error."""

    STEPS = 10_000  # between two looks at the clock: about a millisecond of a DELETE
    # Undoing a DELETE costs about what its commit would have: 0.6 of its time (restoring the
    # pages it changed), not nothing. Stopped at nine tenths of a 50 ms target, a batch held
    # the lock 70-79 ms, 21 times in a run over 1,000,000 sessions on a slow day; at three
    # quarters, at most 66-74 ms in six runs of seven (82.8 once), in no more time
    # (bench_session_cleanup.py's data, the probe running).
    SHARE = 0.75

    def __init__(self, db: str, target_seconds: float) -> None:
        self.connection = connections[db].connection
        self.seconds = target_seconds * self.SHARE
        self.fired = False

    def __enter__(self) -> None:
        until = time.perf_counter() + self.seconds

        def past() -> bool:
            self.fired = time.perf_counter() > until
            return self.fired

        self.connection.set_progress_handler(past, self.STEPS)

    def __exit__(self, *exc_info) -> None:
        self.connection.set_progress_handler(None, self.STEPS)


class _KeysAhead:
    """Keys to delete, read a few thousand rows at a time between batches, a slice's worth ahead.

    Reading keys and finding each part's bounds took 0.8-1.0 s of a run over 1,000,000 sessions
    (of 16-18 s), and the write lock is free for the site after each batch anyway
    (cleanup/sqlite_turns.py): reads done in those gaps cost the run nothing, and a read waits
    for no lock, so a site writer taking its turn meanwhile is not held up. Each is a query of
    its own, over and closed before the next batch: a statement of ours left open across our
    commits made every batch slower (see sqlite_turns.py). The rows are read in slices of their
    own (`_slices`, a run of equal times by key), and a slice to delete is as many of them as
    make its size.
    """

    def __init__(self, parts: Iterator[models.QuerySet], keys_of: Callable[[models.QuerySet], list],
                 slice_rows: Callable[[], int]) -> None:
        self.parts, self.keys_of, self.slice_rows = parts, keys_of, slice_rows
        self.keys: list = []  # the next slice's, so far
        self.all_read = False

    def read_some(self) -> bool:
        """Read one part of the next slice; False once the slice is full or nothing is left."""
        if self.all_read or len(self.keys) >= self.slice_rows():
            return False
        part = next(self.parts, None)  # its bounds first: a query of its own
        if part is None:
            self.all_read = True
            return False
        self.keys += self.keys_of(part)
        return True

    def next_slice(self) -> list | None:
        """The next slice's keys, read to its size; None when none are left."""
        while self.read_some():
            pass
        keys, self.keys = self.keys, []
        return keys or None
