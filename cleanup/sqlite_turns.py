"""Taking turns at SQLite's one write lock: our batches and the site's own writes.

SQLite has a single writer and no queue for it: a writer waiting on its busy timeout polls at
growing intervals (SQLite's default busy handler: 1, 2, 5, 10, 15, 20 ms, 25 three times, then 50
and 100) and would rarely catch the moment between two of our batches. So after each commit the
write lock stays free (`before_batch`) for as long as a writer that began waiting when our batch
asked for the lock may now take between two polls: 22 ms after a batch of up to 50 ms, 27 after
one of up to 100 (a fixed 30 ms cost 4.7 s of a run over 1,000,000 sessions), longer after a
slow one, so a writer already kept waiting is not kept through the next batch as well. Whatever
the run does in between (choosing the next slice, preparing the batch's keys) is done in that
time rather than after it.

The WAL checkpoint (copying committed pages into the database file, two fsyncs) is ours, never
a site writer's: SQLite's auto-checkpoint runs it inside the commit of whichever writer finds
1,000 frames or more in the WAL, and that writer's request waits for the copy. It is done for
many batches at once: a batch of 10,000 sessions of a real site's size (160-240 bytes) writes
about 6,000 pages, and a run's batches rewrite the same pages of the random key's index again and
again. A checkpoint after every batch copied and synced each of those writes (10-12 s of a run
over 1,000,000 sessions on this 2-core machine); one per CHECKPOINT_FRAMES copies a page once
however often it was rewritten, and syncs a few times instead of a hundred (3-4 s).

In between, a read transaction on a connection of our own (`_BackfillPin`) stops every
checkpoint from copying: a site writer's auto-checkpoint finds nothing it may copy and returns at
once, without a sync. When the WAL reaches CHECKPOINT_FRAMES, the pin moves to the WAL's end and
we copy everything before it with the write lock free for the site (a site writer meanwhile
appends to the WAL and copies nothing itself), then the rest under the lock; the pin starts again
on a WAL copied to its end, so the next writer starts the WAL over from its beginning instead of
growing the file.

Our connection's page cache is also made large enough for a batch and its slice's table pages:
with SQLite's default of 2 MB, a batch spilled pages to the WAL and read them back (about a third
of its lock time). A batch of 10,000 sessions of a real site's size dirties about 6,000 pages
(24 MB), so 16 MB spilled too: with 32 MB a run over 1,000,000 sessions spent 3.6 s of system
CPU instead of 4.9 s.

Measured and not kept, in two tries: the checkpoint in a thread of its own, so that the next
slice's keys could be read meanwhile. It was no faster; the site's writers sometimes committed
before the thread took the checkpoint and ran it themselves (probe max latency 95-131 ms), and
the WAL grew to 640-780 MB.

Measured and not kept either (2026-12-02): reading the next slice's keys ahead, beside the batches
of the slice before, on a connection of our own. On a thread (niced), it saved 1.3 s of a run
over 1,000,000 sessions, but a batch it overlapped took up to twice its time: the probe's
slowest operation waited 89-107 ms instead of 57-60. A few thousand rows at a time in the gaps
between batches, on the run's own thread, the statement left open across our commits made every
batch slower (8-10 s inside them instead of 6). An open read of ours beside the batches costs
more than it saves. What is kept instead (cleanup/purge.py, _KeysAhead): reads of a few
thousand rows, each a query over and closed before the next batch, in the gaps.

The gaps also sync the WAL ahead of its copy (_FileSyncs), on the run's own thread. Synced on a
thread beside the batches, their commits were less even: 2-5 holds of the lock over 75 ms in a
run over 1,000,000 sessions, and probe max 107-110 ms, against none and 85-86 ms (twice in
three runs) every 10,000 frames in the gaps; every 5,000, 1-3 such holds.
"""

import os
import threading
import time
from collections.abc import Callable

from django.db import connections, transaction

# When a writer waiting on SQLite's default busy handler tries the lock again, in ms from its first
# try (sqliteDefaultBusyCallback's `totals`), then every 100 ms.
RETRY_AT_MS = (0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228)
# Added to how long a writer may have waited: one that came while the site's own writer held the
# lock before us waited for it too.
SITE_WRITE_MS = 5
# Added to the gap: a writer's sleep overshoots, and its own BEGIN takes a moment.
GAP_MARGIN_MS = 2
CACHE_KIB = 32_000
# 300 MB of 4 KiB pages, less than stock's single DELETE leaves. Not more: a page our batch reads
# is looked up in the WAL's index one table of 4,096 frames after another, so the longer the WAL
# the slower every batch, and the slowest probe operation with it. On 1,000,000 sessions with the
# probe (in-process): 50,000 frames, 5.5-5.6 s inside the batches and 2.8-3.0 s copying, probe
# max 56-57 ms; 100,000, 6.1-6.2 s and 2.3-2.5 s, 59-82 ms; 200,000, 6.6 s and 1.9-2.0 s,
# 109-134 ms. In bench/bench_session_cleanup.py the copies cost more: 50,000 took 16.5-17.1 s
# in all, 100,000 14.1 s (probe max 109 ms), 75,000 14.7-15.2 s (57-100 ms).
CHECKPOINT_FRAMES = 75_000
# How long a copy's pass goes on with passes after its first (see _checkpoint_until). A site's
# reader that began before a commit holds back the frames it may still read, and a site writer's
# checkpoint keeps ours out while it runs; both are short, so the passes wait them out rather
# than leave those frames to the next copy (or to the last pass, under the lock).
CHECKPOINT_RETRY_SECONDS = 0.05
# Frames written between two syncs of the WAL ahead of its copy (_FileSyncs): about 40 MB.
SYNC_AHEAD_FRAMES = 10_000


class SQLiteTurns:
    """`with SQLiteTurns(db) as turns:` around a run of batches, `turns.before_batch()` before
    each and `turns.after_commit(asked_at=...)` after."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.previous: dict[str, int] = {}
        self.pin: _BackfillPin | None = None
        self.released_at: float | None = None  # when our last transaction let the write lock go
        self.gap = 0.0  # how long the lock then stays free
        self.syncs: _FileSyncs | None = None

    def __enter__(self) -> "SQLiteTurns":
        connection = connections[self.db]
        with connection.cursor() as cursor:
            for name in ("wal_autocheckpoint", "cache_size"):
                cursor.execute(f"PRAGMA {name}")
                self.previous[name] = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            cursor.execute("PRAGMA journal_mode")
            in_wal = cursor.fetchone()[0] == "wal"
        # Without a WAL (an in-memory test database) there is nothing to checkpoint; inside an
        # outer transaction nothing is committed before it ends.
        if in_wal and not connection.in_atomic_block:
            self.pin = _BackfillPin(self.db)
            try:
                self.syncs = _FileSyncs(connection.connection)
                self._copy_everything(then_pin=True)
            except Exception:
                self.__exit__()  # not called by `with` when this raises
                raise
        return self

    def __exit__(self, *exc_info) -> None:
        connection = connections[self.db]
        try:
            if self.pin:
                self._copy_everything(then_pin=False)  # the run's last frames, before a site writer does
            # Straight to sqlite3: PRAGMAs are not transactional, and Django refuses any query
            # inside a transaction marked for rollback, which would leave ours in place.
            for name, value in self.previous.items():
                connection.connection.execute(f"PRAGMA {name}={value}")
        except Exception:
            # Never handed on with our settings (the next target's run would take them for
            # the defaults); whatever error ended the run goes on up.
            connection.close()
        finally:
            if self.pin:
                self.pin.close()
            if self.syncs:
                self.syncs.close()

    def before_batch(self, work: Callable[[], bool] | None = None) -> None:
        """Wait out the gap; `work` (a short read, True while there is more to do) fills it first."""
        if self.released_at is None:
            return
        free_until = self.released_at + self.gap
        if self.syncs:
            self.syncs.wal_if_due()
        while work and time.monotonic() < free_until and work():
            pass
        time.sleep(max(0.0, free_until - time.monotonic()))

    def after_commit(self, *, asked_at: float) -> None:
        """After a batch's commit; `asked_at` (time.monotonic) is when it asked for the lock."""
        connection = connections[self.db]
        if connection.in_atomic_block:
            return  # inside an outer transaction nothing was committed and the lock is still ours
        self._released(asked_at)
        # While pinned, a checkpoint copies nothing and only tells how far the WAL has grown. Its
        # length, not what is left to copy: the WAL starts over only when the first writer after
        # a complete copy finds no reader in it, and a WAL that did not is copied again sooner.
        if not self.pin:
            return
        frames = _checkpoint(connection.connection)[0]
        if frames == BUSY:
            return  # a site writer's own checkpoint (of nothing: pinned) is running; next batch
        if frames >= CHECKPOINT_FRAMES:
            self._copy_everything(then_pin=True, waiting_since=asked_at)
        else:
            self.syncs.written(frames)

    def _released(self, waiting_since: float) -> None:
        """The lock let go: it stays free as long as a writer waiting since then may poll."""
        self.released_at = time.monotonic()
        self.gap = _poll_interval(self.released_at - waiting_since) + GAP_MARGIN_MS / 1000

    def _copy_everything(self, *, then_pin: bool, waiting_since: float | None = None) -> None:
        # Pinned again at the WAL's end rather than let go: the bulk may copy every frame
        # committed so far and none after. A site writer during the bulk and the file's sync then
        # appends to the WAL and copies nothing itself. Unpinned, the first one after the bulk
        # found its frames copyable, checkpointed them and synced the database file behind ours
        # (290-430 ms of its request), or started the WAL over and synced the WAL's header.
        self.pin.release()
        self.pin.hold()
        free_from = time.monotonic()
        # The bulk, with the write lock free for the site: one pass copies up to the pin, and a
        # frame a site's reader still needs is left to the last pass. Not a pass that copied
        # nothing because a site writer's checkpoint was running: the last pass, under the
        # lock, would copy it all.
        _checkpoint_until(connections[self.db].connection, lambda log, copied: log != BUSY)
        if self.syncs:
            # The pages just copied on disk before the last pass, not in it: a site commit during
            # the bulk leaves SQLite's own sync of the file to the next checkpoint, which was the
            # last pass, under the write lock (167 ms of it once, the probe's writer waiting 183).
            self.syncs.database()
        asked_at = time.monotonic()
        # A writer waiting since our batch before took its turn during the copy only if the copy
        # outlasted its polls; if not, it still waits, since then (a copy of nothing is over in a
        # millisecond: a probe's update waited 167 ms through two more batches).
        if waiting_since is None or asked_at - free_from >= _poll_interval(free_from - waiting_since):
            waiting_since = asked_at
        # The last pass under the write lock: no commit can come in during it, so it ends with the
        # file's sync (of every page copied: see _checkpoint_until), and a pin started then reads the
        # database file alone, so the next writer starts the WAL over instead of growing it. (A
        # checkpoint cannot run on a connection inside a transaction: the pin's own copies.)
        with transaction.atomic(using=self.db):
            self.pin.release()
            _checkpoint_until(self.pin.connection, lambda log, copied: log != BUSY and copied == log)
            if then_pin:
                self.pin.hold()
        self._released(waiting_since)  # the site's turn comes after


def _poll_interval(waited_seconds: float) -> float:
    """How long a writer that has waited `waited_seconds` for the lock may sleep before trying
    again (SQLite's default busy handler), counting a site writer's turn before ours."""
    waited_ms = max(0.0, waited_seconds) * 1000 + SITE_WRITE_MS
    after = max(at for at in RETRY_AT_MS if at <= waited_ms)
    following = next((at for at in RETRY_AT_MS if at > waited_ms), after + 100)
    return (following - after) / 1000


def _checkpoint_until(connection, done: Callable[[int, int], bool]) -> None:
    """Checkpoint in passes until `done(log, copied)`, for at most CHECKPOINT_RETRY_SECONDS.

    The last pass of a copy runs with our write lock held (no commit comes in meanwhile) until
    the WAL is copied to its end, and SQLite then syncs the file too: a frame a site's reader
    still needs is left by a pass, and a reader's read is short. Any pass copies nothing while
    another connection's checkpoint runs (a site writer's, after its commit), which is short
    too while we pin the WAL.
    """
    given_up_at = time.monotonic() + CHECKPOINT_RETRY_SECONDS
    while True:
        log, copied = _checkpoint(connection)
        if done(log, copied) or time.monotonic() >= given_up_at:
            return
        if log == BUSY:
            # Not a loop of thousands of calls meanwhile: a FULL checkpoint of another's (a
            # backup tool's) holds the checkpoint lock until our write lock is let go.
            time.sleep(BUSY_RETRY_SECONDS)


# What _checkpoint gives for both counts when another connection's checkpoint is running.
BUSY = -1
BUSY_RETRY_SECONDS = 0.001


def _checkpoint(connection) -> tuple[int, int]:
    """Frames in the WAL and frames copied, after copying what it may. PASSIVE: copies what no
    reader still needs and never waits for anyone; while another connection checkpoints (a site
    writer's auto-checkpoint after its commit), it copies nothing and both are BUSY. Taken for
    a copy to the end (-1 == -1), that left a run's last frames to the site's next writer."""
    _, log, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return log, copied


class _BackfillPin:
    """A read transaction on a connection of its own. While it is open, no checkpoint may copy a
    frame committed after it began into the database file: a reader of that snapshot still reads
    those pages from the file."""

    def __init__(self, db: str) -> None:
        ours = connections[db]
        self.wrapper = type(ours)(ours.settings_dict, alias=db)
        self.wrapper.ensure_connection()
        self.connection = self.wrapper.connection
        self.holding = False

    def hold(self) -> None:
        # A read, not Django's BEGIN IMMEDIATE: that would take the write lock.
        self.connection.execute("BEGIN DEFERRED")
        self.connection.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
        self.holding = True

    def release(self) -> None:
        if self.holding:
            self.connection.execute("ROLLBACK")
            self.holding = False

    def close(self) -> None:
        self.wrapper.close()


class _FileSyncs:
    """Syncs of our own, ahead of SQLite's, so that its syncs find little left to write.

    The WAL every SYNC_AHEAD_FRAMES, in the gaps between batches: a checkpoint begins by syncing
    the WAL, and 75,000 frames written since the last copy took 100-200 ms of each copy's 330-400
    ms on this machine (bench_session_cleanup.py), with the batches stopped; synced ahead, the
    copy finds most of them on disk already. The database file after the bulk of a copy, with
    the write lock free (see SQLiteTurns._copy_everything). These add syncs to SQLite's own on
    the same files and leave them all in place, so nothing is less durable.
    """

    def __init__(self, connection) -> None:
        path = next(row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main")
        self.database_fd = _database_fd(path)
        # The WAL carries no lock of SQLite's (those are on the database file and the -shm), so
        # this one is closed with the run.
        self.wal_fd = os.open(f"{path}-wal", os.O_RDONLY)
        self.synced_to = 0  # the WAL's length at the last sync
        self.frames = 0
        # fdatasync where there is one (not on macOS): the files' sizes and times need no sync.
        self.sync = getattr(os, "fdatasync", os.fsync)

    def written(self, frames: int) -> None:
        """After a commit: the WAL now holds `frames` (fewer than before once it started over)."""
        self.frames = frames
        if frames < self.synced_to:
            self.synced_to = 0

    def wal_if_due(self) -> None:
        if self.frames - self.synced_to >= SYNC_AHEAD_FRAMES:
            self.synced_to = self.frames
            self.sync(self.wal_fd)

    def database(self) -> None:
        self.sync(self.database_fd)

    def close(self) -> None:
        os.close(self.wal_fd)  # the database file's stays open: see _database_fd


# Our descriptors on database files, by (device, inode), open for the life of the process.
_DATABASE_FDS: dict[tuple[int, int], int] = {}
_DATABASE_FDS_LOCK = threading.Lock()


def _database_fd(path: str) -> int:
    """A descriptor on the database file at `path`, for syncing it; never closed.

    Closing any descriptor on a file drops every POSIX lock the process holds on it, SQLite's
    included (sqlite.org/howtocorrupt.html, 2.2.1). A run that closed its own left the process's
    connections without their shared lock on the database file: the next process to close its
    last connection then took the file for its own, checkpointed and deleted the WAL under them,
    and every statement here after failed with "disk I/O error" (a write meanwhile is lost). One
    descriptor per database file a process cleans is all this keeps.
    """
    with _DATABASE_FDS_LOCK:
        found = os.stat(path)
        fd = _DATABASE_FDS.get((found.st_dev, found.st_ino))
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            opened = os.fstat(fd)  # the file opened, should the path have been replaced meanwhile
            _DATABASE_FDS.setdefault((opened.st_dev, opened.st_ino), fd)
        return fd
