import operator
import os
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, transaction
from django.utils import timezone

from cleanup import sqlite_turns
from cleanup.models import CleanupRun, RetentionPolicy
from cleanup.services import retention_policy_for, target_purge
from cleanup.sqlite_turns import SQLiteTurns
from cleanup.targets import retention_targets
from tests.cleanup import factories
from tests.cleanup.clock import FakeClock

pytestmark = pytest.mark.django_db


def pragma(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("taking turns at the write lock is SQLite's")


def test_its_settings_are_handed_back_from_a_transaction_marked_for_rollback():
    (taken,) = factories.sessions(1, expires_in=timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint=777")

    with pytest.raises(IntegrityError), transaction.atomic():
        with SQLiteTurns(DEFAULT_DB_ALIAS):
            assert pragma("wal_autocheckpoint") == 0
            with transaction.atomic(savepoint=False):
                Session.objects.create(session_key=taken, session_data="", expire_date=timezone.now())

    assert pragma("wal_autocheckpoint") == 777


def site_connection() -> sqlite3.Connection:
    """A connection of the site's own, as another process opens it."""
    site = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    site.execute("PRAGMA busy_timeout=5000")
    return site


def wal_frames(site: sqlite3.Connection) -> tuple[int, int]:
    """(frames in the WAL, frames copied into the database file), copying what may be copied."""
    _, log, copied = site.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return log, copied


def purge_sessions_watching(watch, batch_size: int = 10) -> CleanupRun:
    """Ten sessions a batch (or `batch_size`), `watch` called after each."""
    target = retention_targets()["sessions"]
    policy = retention_policy_for(target=target)
    RetentionPolicy.objects.filter(pk=policy.pk).update(batch_size=batch_size, batch_target_ms=None)
    policy.refresh_from_db()
    return target_purge(target=target, policy=policy, dry_run=False, trigger="command", watch=watch)


@pytest.mark.django_db(transaction=True)
def test_between_batches_no_writer_copies_the_runs_pages_until_its_own_checkpoint():
    factories.sessions(40, expires_in=-timedelta(minutes=5))
    site = site_connection()
    site.execute("PRAGMA wal_autocheckpoint=1")  # the site's every commit tries a checkpoint
    left_in_the_wal = []

    def site_writes(progress):
        site.execute("INSERT INTO django_session VALUES (?, 'e30=', '2100-01-01 00:00:00')",
                     (f"site-{progress.batches}",))
        log, copied = wal_frames(site)
        left_in_the_wal.append(log - copied)

    run = purge_sessions_watching(site_writes)

    assert (run.status, run.rows_deleted, run.batches) == ("succeeded", 40, 4)
    # Neither the site's auto-checkpoints nor anyone's PASSIVE one copied the batches' pages...
    assert all(left_in_the_wal), left_in_the_wal
    # ...and the run copied every one before it ended.
    log, copied = wal_frames(site)
    assert log == copied
    assert Session.objects.filter(session_key__startswith="site-").count() == 4


@pytest.mark.django_db(transaction=True)
def test_the_run_copies_the_wal_whenever_it_reaches_its_frame_budget(monkeypatch):
    monkeypatch.setattr(sqlite_turns, "CHECKPOINT_FRAMES", 1)
    factories.sessions(30, expires_in=-timedelta(minutes=5))
    site = site_connection()
    left_in_the_wal = []

    run = purge_sessions_watching(lambda progress: left_in_the_wal.append(operator.sub(*wal_frames(site))))

    assert run.rows_deleted == 30 and left_in_the_wal == [0, 0, 0]


@pytest.mark.django_db(transaction=True)
def test_a_site_writer_during_a_copy_appends_to_the_wal_and_neither_copies_nor_starts_it_over(monkeypatch):
    monkeypatch.setattr(sqlite_turns, "CHECKPOINT_FRAMES", 1)  # a copy after every batch
    factories.sessions(30, expires_in=-timedelta(minutes=5))
    site = site_connection()
    site.execute("PRAGMA wal_autocheckpoint=1")  # the site's every commit tries a checkpoint
    during_copies = []
    sync_the_database = sqlite_turns._FileSyncs.database

    def site_writes_then_sync(syncs):
        # Between a copy's bulk and its last pass, the write lock free for the site.
        frames_before = wal_frames(site)[0]
        site.execute("INSERT INTO django_session VALUES (?, 'e30=', '2100-01-01 00:00:00')",
                     (f"site-{len(during_copies)}",))
        during_copies.append((frames_before, *wal_frames(site)))
        sync_the_database(syncs)

    monkeypatch.setattr(sqlite_turns._FileSyncs, "database", site_writes_then_sync)
    run = purge_sessions_watching(lambda progress: None)

    # Copies before the first batch, after each of the three, and at the end: the first and the
    # last find nothing of the run's to copy, and a WAL copied to its end may well start over.
    assert run.rows_deleted == 30 and len(during_copies) == 5
    for frames_before, log, copied in during_copies[1:-1]:
        # Appended after the run's frames, not at the start of a WAL begun again (whose first
        # writer syncs its header)...
        assert log > frames_before, during_copies
        # ...and not copied, neither by the site's auto-checkpoint nor by anyone's PASSIVE one,
        # which would sync the database file behind the run's own sync of it.
        assert copied < log, during_copies
    log, copied = wal_frames(site)
    assert log == copied  # the run copied the site's frames too before it ended


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_leaves_no_reader_holding_the_wal():
    factories.sessions(30, expires_in=-timedelta(minutes=5))

    def fail(progress):
        raise OSError("disk gone")

    run = purge_sessions_watching(fail)

    assert run.status == "failed" and "disk gone" in run.error
    site = site_connection()
    site.execute("PRAGMA busy_timeout=0")
    # TRUNCATE waits for every reader to finish: a reader left open would make it busy.
    assert site.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_after_a_run_another_process_closing_the_database_leaves_this_ones_wal_in_place():
    # The run syncs the database file through a descriptor of its own. Closing it dropped this
    # process's locks on the file (SQLite's too): the other process, closing its last
    # connection, found itself alone, checkpointed and deleted the WAL, and this process's next
    # statement failed with "disk I/O error" (the suite's gwN database, the last CI's failure).
    factories.sessions(30, expires_in=-timedelta(minutes=5))
    assert purge_sessions_watching(lambda progress: None).rows_deleted == 30
    name = connection.settings_dict["NAME"]

    subprocess.run([sys.executable, "-c", "import sqlite3, sys; site = sqlite3.connect(sys.argv[1]); "
                    "site.execute('SELECT count(*) FROM django_session').fetchall(); site.close()", name],
                   check=True, timeout=30)

    assert os.path.exists(f"{name}-wal")
    factories.sessions(1, expires_in=timedelta(days=1))  # a write on this process's connection
    connection.close()
    assert Session.objects.count() == 1  # and a new connection reads it


@pytest.mark.django_db(transaction=True)
def test_the_lock_stays_free_as_long_as_a_writer_waiting_since_the_batch_asked_may_poll(monkeypatch):
    clock = FakeClock(100.0)
    monkeypatch.setattr(sqlite_turns, "time", clock)
    turns = SQLiteTurns(DEFAULT_DB_ALIAS)
    turns.before_batch()
    assert clock.slept == []  # nothing committed yet: no gap to keep
    # A batch that held the lock 45 ms: a writer that came as it began polls 20 ms apart (33-53
    # ms into its wait), plus 2 ms of margin. What the run did since its commit counts.
    turns.after_commit(asked_at=clock.now - 0.045)
    clock.now += 0.01  # the next slice chosen, its keys sorted
    turns.before_batch()
    assert clock.slept == [pytest.approx(0.012)]
    # After a slow one (130 ms), a waiter polls 50 ms apart: the gap is that long.
    turns.after_commit(asked_at=clock.now - 0.13)
    turns.before_batch()
    assert clock.slept[-1] == pytest.approx(0.052)
    # And past SQLite's table of waits, every 100 ms.
    turns.after_commit(asked_at=clock.now - 0.5)
    turns.before_batch()
    assert clock.slept[-1] == pytest.approx(0.102)
    turns.after_commit(asked_at=clock.now - 0.01)
    clock.now += 1
    turns.before_batch()
    assert clock.slept[-1] == 0


@pytest.mark.django_db(transaction=True)
def test_after_a_copy_too_short_for_a_waiting_writers_polls_the_gap_counts_from_the_batch_before(monkeypatch):
    clock = FakeClock(100.0)
    monkeypatch.setattr(sqlite_turns, "time", clock)
    copy_takes = {"seconds": 0.0}

    def checkpoint(connection) -> tuple[int, int]:
        if connection is not IdlePin.connection:  # the bulk, not the last pass on the pin's
            clock.advance(copy_takes["seconds"])
        return 0, 0

    monkeypatch.setattr(sqlite_turns, "_checkpoint", checkpoint)
    turns = SQLiteTurns(DEFAULT_DB_ALIAS)
    turns.pin = IdlePin()

    # The batch before asked for the lock 45 ms ago; a copy of nothing gave a writer no turn.
    turns._copy_everything(then_pin=True, waiting_since=clock.now - 0.045)
    assert turns.gap == pytest.approx(0.022)
    # A copy of half a second did: only the last pass's own moment under the lock counts.
    copy_takes["seconds"] = 0.5
    turns._copy_everything(then_pin=True, waiting_since=clock.now - 0.045)
    assert turns.gap == pytest.approx(0.007)


@pytest.mark.django_db(transaction=True)
def test_a_copy_waits_out_another_connections_checkpoint_instead_of_taking_it_for_done(monkeypatch):
    # While a site writer's auto-checkpoint runs, a PASSIVE one copies nothing and says -1 for
    # both counts: equal, the last pass took it for a WAL copied to its end, and the bulk left
    # everything to the last pass, under the lock.
    clock = FakeClock(100.0)
    monkeypatch.setattr(sqlite_turns, "time", clock)
    answers, asked = [], []

    def checkpoint(connection) -> tuple[int, int]:
        asked.append(clock.now)
        clock.advance(0.001)
        return answers[len(asked) - 1]

    monkeypatch.setattr(sqlite_turns, "_checkpoint", checkpoint)
    turns = SQLiteTurns(DEFAULT_DB_ALIAS)
    turns.pin = IdlePin()
    # The bulk: busy, then a pass that copied what it might (a site's reader kept the rest). The
    # last pass: busy again, then all copied.
    answers[:] = [(sqlite_turns.BUSY, sqlite_turns.BUSY), (120, 80)] * 2 + [(120, 120)]
    turns._copy_everything(then_pin=True)
    assert len(asked) == 5


@pytest.mark.django_db(transaction=True)
def test_sqlite_says_busy_with_minus_one_for_both_counts_while_another_connections_checkpoint_runs():
    # What BUSY stands for, from SQLite itself: a TRUNCATE checkpoint of another connection's (a
    # backup tool's) holds the checkpoint lock while it waits for the write lock held here.
    import threading

    factories.sessions(5, expires_in=timedelta(days=1))
    writer = site_connection()
    writer.execute("BEGIN IMMEDIATE")
    rolled_back = threading.Event()

    def truncate_until_through() -> None:
        # A checkpoint that finds the checkpoint lock taken (by our PASSIVE below, for a moment)
        # returns busy at once, without waiting: such a one is started again, as long as the
        # write lock is held here. One that has the lock waits for the write lock, and gets
        # through (busy 0) once it is rolled back.
        backup = site_connection()
        while backup.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] and not rolled_back.is_set():
            pass

    truncate = threading.Thread(target=truncate_until_through)
    truncate.start()
    ours = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        deadline = time.monotonic() + 20
        while (answer := sqlite_turns._checkpoint(ours)) != (sqlite_turns.BUSY, sqlite_turns.BUSY):
            assert time.monotonic() < deadline, answer  # the TRUNCATE one has the lock within moments
            time.sleep(0.01)
    finally:
        rolled_back.set()
        writer.execute("ROLLBACK")  # the TRUNCATE checkpoint goes on and ends
        truncate.join(timeout=10)
    assert sqlite_turns._checkpoint(ours)[0] != sqlite_turns.BUSY


class IdlePin:
    connection = object()

    def hold(self) -> None: ...

    def release(self) -> None: ...


@pytest.mark.django_db(transaction=True)
def test_work_given_to_the_gap_is_done_while_the_lock_is_free_and_the_rest_slept(monkeypatch):
    clock = FakeClock(100.0)
    monkeypatch.setattr(sqlite_turns, "time", clock)
    turns = SQLiteTurns(DEFAULT_DB_ALIAS)
    reads = []

    def read(takes: float, parts: int):
        def one() -> bool:
            reads.append(clock.now)
            clock.advance(takes)
            return len(reads) < parts
        return one

    # A 22 ms gap: reads of 8 ms at 0, 8 and 16 ms; the third ends past the gap, no sleep after.
    turns.after_commit(asked_at=clock.now - 0.045)
    turns.before_batch(read(0.008, parts=10))
    assert len(reads) == 3 and clock.slept == [0]
    # Nothing left to read after the first: the rest of the gap is slept.
    reads.clear()
    turns.after_commit(asked_at=clock.now - 0.045)
    turns.before_batch(read(0.005, parts=1))
    assert len(reads) == 1 and clock.slept[-1] == pytest.approx(0.017)


@pytest.mark.django_db(transaction=True)
def test_the_next_slices_keys_are_read_between_the_batches_of_the_slice_before(monkeypatch):
    from django.test.utils import CaptureQueriesContext

    from cleanup import purge

    monkeypatch.setattr(sqlite_turns, "time", FakeClock(100.0))  # every read falls inside its gap
    monkeypatch.setattr(purge, "SQLITE_READ_AHEAD_ROWS", 5)
    monkeypatch.setattr(purge, "SQLITE_SLICE_ROWS", 10)
    for minutes in range(1, 31):
        factories.sessions(1, expires_in=-timedelta(minutes=minutes))

    with CaptureQueriesContext(connection) as queries:
        run = purge_sessions_watching(lambda progress: None, batch_size=5)

    assert (run.status, run.rows_deleted, run.batches) == ("succeeded", 30, 6)
    kinds = [("keys" if "json_group_array" in q["sql"] else "delete") for q in queries.captured_queries
             if "json_group_array" in q["sql"] or q["sql"].startswith('DELETE FROM "django_session"')]
    # Slices of ten, two batches each, read in parts of five: the first slice before any batch,
    # and each after it in the gap before a batch of the slice before, never between its own.
    assert kinds == ["keys"] * 4 + ["delete"] * 2 + ["keys"] * 2 + ["delete"] * 4, kinds


@pytest.mark.django_db(transaction=True)
def test_the_wal_is_synced_in_the_gaps_every_few_thousand_frames_and_the_file_before_a_copys_last_pass(
        monkeypatch):
    synced = []
    real_sync = getattr(sqlite_turns.os, "fdatasync", sqlite_turns.os.fsync)
    name = connection.settings_dict["NAME"]

    def sync(fd: int) -> None:
        synced.append({sqlite_turns.os.stat(name).st_ino: "database",
                       sqlite_turns.os.stat(f"{name}-wal").st_ino: "wal"}[sqlite_turns.os.fstat(fd).st_ino])
        real_sync(fd)

    monkeypatch.setattr(sqlite_turns.os, "fdatasync", sync, raising=False)
    monkeypatch.setattr(sqlite_turns.os, "fsync", sync)
    factories.sessions(40, expires_in=-timedelta(minutes=5))

    monkeypatch.setattr(sqlite_turns, "SYNC_AHEAD_FRAMES", 1)
    run = purge_sessions_watching(lambda progress: None)
    # Four batches: the WAL in the three gaps between them, each after frames written; the file
    # at the run's two copies (its start and its end).
    assert run.batches == 4
    assert synced == ["database", "wal", "wal", "wal", "database"]

    synced.clear()
    factories.sessions(40, expires_in=-timedelta(minutes=5))
    monkeypatch.setattr(sqlite_turns, "SYNC_AHEAD_FRAMES", 10**9)
    purge_sessions_watching(lambda progress: None)
    assert synced == ["database", "database"]


@pytest.mark.django_db(transaction=True)
def test_the_runs_own_writes_go_in_its_batches_transactions_not_in_the_gaps_between(monkeypatch):
    from cleanup import services

    monkeypatch.setattr(services, "CHECKPOINT_SECONDS", 0)  # progress saved and lease renewed every batch
    factories.sessions(30, expires_in=-timedelta(minutes=5))
    connection.ensure_connection()
    statements = []
    connection.connection.set_trace_callback(statements.append)
    try:
        run = purge_sessions_watching(lambda progress: None)
    finally:
        connection.connection.set_trace_callback(None)

    assert (run.status, run.rows_deleted, run.batches) == ("succeeded", 30, 3)
    deletes = [i for i, sql in enumerate(statements) if sql.startswith('DELETE FROM "django_session"')]
    first_batch = max(i for i in range(deletes[0]) if statements[i].startswith("BEGIN"))
    in_transaction, writes_alone, writes_in_batches = False, [], 0
    for sql in statements[first_batch:deletes[-1]]:
        word = sql.split()[0].upper()
        if word == "BEGIN":
            in_transaction = True
        elif word in ("COMMIT", "ROLLBACK"):
            in_transaction = False
        elif word in ("INSERT", "UPDATE", "DELETE"):
            if in_transaction:
                writes_in_batches += "django_session" not in sql
            else:
                writes_alone.append(sql)
    assert writes_alone == []
    assert writes_in_batches >= 4  # the run's progress and its lease, before each later batch
