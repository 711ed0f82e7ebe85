import time
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from django_celery_results.models import TaskResult

from cleanup import purge as purge_module
from cleanup import services
from cleanup.leases import lease_claim
from cleanup.models import CleanupRun, RetentionPolicy, TargetLease
from cleanup.services import retention_policy_for, retention_sweep, target_purge
from cleanup.targets import retention_targets
from tests.cleanup import factories
from tests.cleanup.clock import FakeClock

pytestmark = pytest.mark.django_db

EXPIRED, LIVE = -timedelta(minutes=5), timedelta(days=1)


def policy(key: str, **fields) -> RetentionPolicy:
    found = retention_policy_for(target=retention_targets()[key])
    RetentionPolicy.objects.filter(pk=found.pk).update(**fields)
    found.refresh_from_db()
    return found


@pytest.fixture
def monotonic(monkeypatch):
    """A monotonic clock that moves only when the test says, read by the purge's time budget and
    checkpoints (cleanup.purge and cleanup.services read `time.monotonic`): the budget then
    depends on the batches' work as the test paces it, not on how busy the machine is. The rest of
    the `time` module, and every other module's, stays real.

    It reads long before the real monotonic clock (a million seconds), never after it: a time
    it gives that reaches another module is compared there with the real clock (cleanup.purge
    hands a batch's asked-for-the-lock time to cleanup.sqlite_turns), and reads as long ago."""
    clock = FakeClock(time.monotonic() - 1e6)
    for module in (purge_module, services):
        monkeypatch.setattr(module, "time", clock)
    return clock


def purge_noting_batches(key: str, **options) -> tuple[CleanupRun, list[int]]:
    """`purge`, and the rows each batch deleted, in order."""
    deleted_per_batch = []
    run = purge(key, watch=lambda progress: deleted_per_batch.append(progress.deleted - sum(deleted_per_batch)),
                **options)
    return run, deleted_per_batch


def purge(key: str, **options) -> CleanupRun:
    options.setdefault("dry_run", False)
    return target_purge(target=retention_targets()[key], policy=policy(key), trigger="command", **options)


def test_it_deletes_expired_sessions_in_batches_and_keeps_live_ones():
    factories.sessions(50, expires_in=EXPIRED)
    live = factories.sessions(20, expires_in=LIVE)
    policy("sessions", batch_size=7, batch_target_ms=None)

    run = purge("sessions")

    assert (run.status, run.rows_matched, run.rows_deleted, run.batches) == ("succeeded", 50, 50, 8)
    assert set(Session.objects.values_list("session_key", flat=True)) == set(live)
    assert run.finished_at >= run.started_at and not run.stopped_on_budget


def test_a_dry_run_counts_what_would_go_and_deletes_nothing():
    factories.sessions(12, expires_in=EXPIRED)
    factories.sessions(3, expires_in=LIVE)
    run = purge("sessions", dry_run=True)
    assert (run.rows_matched, run.rows_deleted, run.dry_run) == (12, 0, True)
    assert Session.objects.count() == 15


def test_it_keeps_the_newest_results_of_each_schedule_however_old():
    nightly_recent = factories.task_results(4, schedule="nightly", age=timedelta(days=1))
    nightly_old = factories.task_results(15, schedule="nightly", age=timedelta(days=40))
    hourly_old = factories.task_results(3, schedule="hourly", age=timedelta(days=40))
    unscheduled_old = factories.task_results(12, schedule=None, age=timedelta(days=40))
    policy("task_results", max_age_days=30, keep_last=10, batch_size=4, batch_target_ms=None)

    run = purge("task_results")

    remaining = set(TaskResult.objects.values_list("pk", flat=True))
    # nightly: the 4 recent ones plus the 6 newest old ones make its newest 10.
    assert remaining == set(nightly_recent) | set(nightly_old[:6]) | set(hourly_old) | set(unscheduled_old[:10])
    assert run.rows_deleted == 9 + 2 == run.rows_matched


def test_without_a_max_age_an_age_based_target_keeps_everything():
    factories.task_results(5, schedule="nightly", age=timedelta(days=400))
    policy("task_results", max_age_days=None)
    run = purge("task_results")
    assert run.status == "succeeded" and "every row is kept" in run.error
    assert TaskResult.objects.count() == 5


def test_a_run_stops_on_its_time_budget_and_the_next_run_goes_on(monotonic):
    factories.sessions(30, expires_in=EXPIRED)
    policy("sessions", batch_size=5, batch_target_ms=None, time_budget_seconds=1)

    # Each batch takes 0.6 s of the run's 1 s budget: the second ends past it, and the run stops there.
    slow = purge("sessions", watch=lambda progress: monotonic.advance(0.6))
    assert slow.status == "stopped_on_budget" and slow.stopped_on_budget
    assert slow.rows_deleted == 10 and Session.objects.count() == 20

    finishing = purge("sessions")
    assert finishing.status == "succeeded" and finishing.rows_deleted == 20
    assert Session.objects.count() == 0


def test_a_target_another_run_holds_is_skipped_with_the_holder_named():
    factories.sessions(5, expires_in=EXPIRED)
    assert lease_claim(target="sessions", holder="ops-2:4242:cafe")

    run = purge("sessions")

    assert run.status == "skipped" and "ops-2:4242:cafe" in run.error
    assert Session.objects.count() == 5


def test_an_expired_lease_of_a_killed_run_is_taken_over_and_its_run_marked_interrupted():
    factories.sessions(5, expires_in=EXPIRED)
    dead = CleanupRun.objects.create(target="sessions", trigger="schedule", started_at=timezone.now(), holder="gone")
    TargetLease.objects.create(target="sessions", claimed_by="gone",
                               claimed_until=timezone.now() - timedelta(seconds=1))

    run = purge("sessions")

    assert run.status == "succeeded" and run.rows_deleted == 5
    dead.refresh_from_db()
    assert dead.status == "failed" and dead.error.startswith("interrupted")
    assert not TargetLease.objects.exists()


def test_a_run_that_loses_its_lease_stops_at_its_next_checkpoint(monkeypatch):
    monkeypatch.setattr(services, "CHECKPOINT_SECONDS", 0)
    factories.sessions(20, expires_in=EXPIRED)
    policy("sessions", batch_size=5, batch_target_ms=None)

    def another_process_takes_over(progress):
        TargetLease.objects.update(claimed_by="someone-else")

    run = purge("sessions", watch=another_process_takes_over)
    assert run.status == "failed" and "lost the target's lease" in run.error
    assert (run.batches, Session.objects.count()) == (1, 15)


def test_a_sweep_records_disabled_targets_as_skipped():
    policy("task_results", enabled=False)
    runs = {run.target: run for run in retention_sweep(trigger="schedule")}
    assert set(runs) == set(retention_targets())
    assert runs["task_results"].status == "skipped" and runs["task_results"].error == "policy disabled"
    assert runs["sessions"].status == "succeeded"


def test_a_sweep_refuses_an_unknown_target():
    with pytest.raises(ValueError, match="unknown retention target.*nope"):
        retention_sweep(keys=["nope"], trigger="command")


def test_no_batch_exceeds_its_size_across_distinct_and_equal_times():
    for minutes in range(1, 31):
        factories.sessions(1, expires_in=-timedelta(minutes=minutes))
    factories.sessions(25, expires_in=-timedelta(minutes=45))  # 25 sessions expiring at one instant
    live = set(factories.sessions(10, expires_in=LIVE))
    policy("sessions", batch_size=10, batch_target_ms=None)
    run, deleted_per_batch = purge_noting_batches("sessions")

    assert run.rows_deleted == 55 and max(deleted_per_batch) <= 10
    assert set(Session.objects.values_list("session_key", flat=True)) == live


def test_batches_grow_towards_the_target_duration_and_shrink_when_slow():
    from cleanup.purge import BatchSizer

    sizer = BatchSizer(size=1000, target_seconds=0.05)
    sizer.record(1000, 0.005)
    assert sizer.size == 2000  # ten times too fast, but at most doubled per batch
    sizer.record(2000, 0.2)
    assert sizer.size == 1000  # four times too slow, but at most halved per batch
    sizer.record(10, 0.2)
    assert sizer.size == 1000  # a short last slice says nothing
    sizer.record(1000, 0.04)
    assert sizer.size == 1000  # 1250 wanted, rounded down to a step of 500
    sizer.record(1000, 0.2)
    assert sizer.size == 500


def test_a_run_hands_its_connection_back_with_its_sqlite_settings_as_they_were():
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's")
    factories.sessions(30, expires_in=EXPIRED)
    policy("sessions", batch_size=5, batch_target_ms=None)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint=777")
        cursor.execute("PRAGMA cache_size=-1234")

    run = purge("sessions")

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == 777
        cursor.execute("PRAGMA cache_size")
        assert cursor.fetchone()[0] == -1234
    assert run.rows_deleted == 30 and Session.objects.count() == 0


def test_a_run_whose_last_batch_ends_past_its_budget_has_finished(monotonic):
    factories.sessions(5, expires_in=EXPIRED)
    policy("sessions", batch_size=5, batch_target_ms=None, time_budget_seconds=1)

    run = purge("sessions", watch=lambda progress: monotonic.advance(1.05))

    assert (run.status, run.rows_deleted, Session.objects.count()) == ("succeeded", 5, 0)


def test_a_batch_size_of_zero_stored_by_hand_deletes_a_row_a_batch():
    factories.sessions(3, expires_in=EXPIRED)
    policy("sessions", batch_size=0, batch_target_ms=None, time_budget_seconds=5)

    run = purge("sessions")

    assert (run.status, run.rows_deleted, run.batches) == ("succeeded", 3, 3)


@pytest.mark.parametrize("part_rows, slice_rows", [(4, 10), (3, 7), (50, 10)])
def test_slices_read_ahead_in_parts_delete_every_expired_row_once_across_equal_times(monkeypatch, part_rows,
                                                                                      slice_rows):
    # On SQLite a slice's keys are read in parts, between the batches of the slice before; the
    # parts here are smaller than a run of equal times and than a slice, or larger than both.
    monkeypatch.setattr(purge_module, "SQLITE_READ_AHEAD_ROWS", part_rows)
    monkeypatch.setattr(purge_module, "SQLITE_SLICE_ROWS", slice_rows)
    for minutes in range(1, 31):
        factories.sessions(1, expires_in=-timedelta(minutes=minutes))
    factories.sessions(25, expires_in=-timedelta(minutes=45))
    factories.sessions(9, expires_in=-timedelta(minutes=50))
    live = set(factories.sessions(10, expires_in=LIVE))
    policy("sessions", batch_size=3, batch_target_ms=None)
    run, deleted_per_batch = purge_noting_batches("sessions")

    assert (run.status, run.rows_matched, run.rows_deleted) == ("succeeded", 64, 64)
    assert max(deleted_per_batch) <= 3
    assert set(Session.objects.values_list("session_key", flat=True)) == live


def sqlite_steps(read) -> int:
    """How many of SQLite's virtual machine steps `read()` took (in hundreds): the work a query
    does, the same however busy the machine is."""
    from django.db import connection

    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    connection.ensure_connection()
    connection.connection.set_progress_handler(count, 100)
    try:
        read()
    finally:
        connection.connection.set_progress_handler(None, 100)
    return steps


def test_on_sqlite_a_slices_read_walks_its_own_rows_not_every_row_to_now():
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the query planner's choice of bounds is SQLite's")
    now = timezone.now()
    Session.objects.bulk_create(
        Session(session_key=f"s{i:05}", session_data="e30=", expire_date=now - timedelta(minutes=3000 - i))
        for i in range(2000))
    removable = services.removable_rows(target=retention_targets()["sessions"], policy=policy("sessions"))
    slices = purge_module._slices(removable, "expire_date", lambda: 100)
    next(slices)
    second = next(slices)  # from the 101st expired session to the 200th
    remover = purge_module._BatchRemover(removable, False, None, purge_module.PurgeProgress(), lambda progress: True)
    found = []
    bounds_only = Session.objects.filter(expire_date__gte=now - timedelta(minutes=2900),
                                         expire_date__lt=now - timedelta(minutes=2800))

    steps = sqlite_steps(lambda: found.extend(remover._keys_of(second)))

    assert sorted(found) == [f"s{i:05}" for i in range(100, 200)]
    # As few steps as a query of the slice's bounds alone, not a walk over the 1,800 rows after it.
    assert steps <= 2 * sqlite_steps(lambda: remover._keys_of(bounds_only)), steps


def test_each_slice_takes_the_batch_size_the_sizer_has_reached(monkeypatch):
    class QuickBatches(FakeClock):
        """Every batch takes a millisecond by the purge's timer: the sizer doubles the size each time."""

        def perf_counter(self) -> float:
            self.now += 0.0005
            return self.now

    monkeypatch.setattr(purge_module, "time", QuickBatches(time.monotonic() - 1e6))
    factories.sessions(2200, expires_in=EXPIRED)
    policy("sessions", batch_size=100, batch_target_ms=50)
    run, deleted_per_batch = purge_noting_batches("sessions")

    assert run.rows_deleted == 2200
    # Doubled each time, from 500 on in steps of 500.
    assert deleted_per_batch == [100, 200, 400, 500, 1000], deleted_per_batch


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_a_delete_running_past_its_target_is_undone_and_done_again_in_halves():
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's writers do not wait for ours")
    expired = set(factories.sessions(2000, expires_in=EXPIRED))
    live = set(factories.sessions(10, expires_in=LIVE))
    # A millisecond's target: deleting 2,000 sessions takes longer on any machine, so the first
    # batch is stopped; halves go on down to batches too small to stop.
    policy("sessions", batch_size=2000, batch_target_ms=1)

    run = purge("sessions")

    assert (run.status, run.rows_deleted) == ("succeeded", 2000)
    assert run.batches > 1  # one batch of 2,000 had it not been stopped
    assert set(Session.objects.values_list("session_key", flat=True)) == live
    assert not expired & set(Session.objects.values_list("session_key", flat=True))
