"""Taking turns at SQLite's one write lock: our batches and the site's own writes.

SQLite has a single writer and no queue for it: a writer waiting on its busy timeout polls at
growing intervals (up to 25 ms, then 50 and 100) and would rarely catch the moment between two
of our batches. So after each commit the write lock stays free for at least GAP_SECONDS before
the next batch takes it.

The gap is spent on the WAL checkpoint (copying committed pages into the database file, two
fsyncs), run by us right after the commit instead of by SQLite's auto-checkpoint: the lock is
free while it runs, and a site's writer that commits meanwhile finds the checkpoint taken and
returns at once instead of running it and waiting for its fsyncs. Our connection's page cache
is also made large enough for a batch and its slice's table pages: with SQLite's default of
2 MB, a batch spilled pages to the WAL and read them back (about a third of its lock time).

Measured and not kept, in two tries: the checkpoint in a thread of its own, so that the next
slice's keys could be read meanwhile. It was no faster; the site's writers sometimes committed
before the thread took the checkpoint and ran it themselves (probe max latency 95-131 ms), and
the WAL grew to 640-780 MB.
"""

import time

from django.db import connections

GAP_SECONDS = 0.03
CACHE_KIB = 16_000


class SQLiteTurns:
    """`with SQLiteTurns(db) as turns:` around a run of batches, `turns.after_commit()` after each."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.previous: dict[str, int] = {}

    def __enter__(self) -> "SQLiteTurns":
        with connections[self.db].cursor() as cursor:
            for name in ("wal_autocheckpoint", "cache_size"):
                cursor.execute(f"PRAGMA {name}")
                self.previous[name] = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return self

    def __exit__(self, *exc_info) -> None:
        connection = connections[self.db]
        try:
            # Straight to sqlite3: PRAGMAs are not transactional, and Django refuses any query
            # inside a transaction marked for rollback, which would leave ours in place.
            for name, value in self.previous.items():
                connection.connection.execute(f"PRAGMA {name}={value}")
        except Exception:
            # Never handed on with our settings (the next target's run would take them for
            # the defaults); whatever error ended the run goes on up.
            connection.close()

    def after_commit(self) -> None:
        connection = connections[self.db]
        if connection.in_atomic_block:
            return  # inside an outer transaction nothing was committed and the lock is still ours
        started = time.monotonic()
        with connection.cursor() as cursor:
            # PASSIVE: copies what no reader still needs and never waits for anyone.
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        time.sleep(max(0.0, GAP_SECONDS - (time.monotonic() - started)))
