import logging
import time
from collections.abc import Callable

from django.utils import timezone

from cleanup.leases import CHECKPOINT_SECONDS, lease_claim, lease_holder, lease_release, lease_renew
from cleanup.models import CleanupRun, RetentionPolicy
from cleanup.purge import BatchSizer, KeepNewest, PurgeProgress, purge_in_batches
from cleanup.targets import RetentionTarget, retention_targets, unknown_targets
from shared.claims import holder_name

logger = logging.getLogger(__name__)

# Called once per batch with the run's progress so far (the command draws its progress bar).
ProgressWatcher = Callable[[PurgeProgress], None]


def _policy_get_or_create(target: RetentionTarget) -> tuple[RetentionPolicy, bool]:
    return RetentionPolicy.objects.get_or_create(
        target=target.key,
        defaults={"max_age_days": target.default_max_age_days, "keep_last": target.default_keep_last},
    )


def retention_policy_for(*, target: RetentionTarget) -> RetentionPolicy:
    return _policy_get_or_create(target)[0]


def retention_policies_seed() -> list[tuple[str, bool]]:
    """Create the missing policies with their targets' defaults; existing ones stay as edited."""
    return [(target.key, _policy_get_or_create(target)[1]) for target in retention_targets().values()]


def removable_rows(*, target: RetentionTarget, policy: RetentionPolicy):
    """The rows the policy lets go now (before keep-last), or None when none may go."""
    condition = target.removable(max_age_days=policy.max_age_days, now=timezone.now())
    if condition is None:
        return None
    return target.model_class._base_manager.filter(condition)


def target_purge(
    *, target: RetentionTarget, policy: RetentionPolicy, dry_run: bool, trigger: str,
    watch: ProgressWatcher | None = None,
) -> CleanupRun:
    holder = holder_name()
    run = CleanupRun.objects.create(
        target=target.key, trigger=trigger, dry_run=dry_run, started_at=timezone.now(), holder=holder
    )
    claimed = False
    try:
        claimed = lease_claim(target=target.key, holder=holder)
        if not claimed:
            lease = lease_holder(target=target.key)
            held_by = f"{lease.claimed_by} until {lease.claimed_until:%H:%M:%S}" if lease else "another process"
            return _finish(run, CleanupRun.Status.SKIPPED, f"another run is cleaning {target.key} ({held_by})")
        return _purge_under_lease(run, target, policy, holder, watch)
    except Exception as error:
        logger.exception("cleanup of %s failed", target.key)
        # The run's counts are those of its last finished batch (kept in memory as it goes).
        return _finish(run, CleanupRun.Status.FAILED, f"{type(error).__name__}: {error}")
    finally:
        if claimed:
            lease_release(target=target.key, holder=holder)


def _purge_under_lease(run, target, policy, holder, watch) -> CleanupRun:
    # Holding the lease proves that any other run still marked running on this target died
    # (a live one would hold the lease); say so instead of leaving it "running" forever.
    CleanupRun.objects.filter(target=target.key, status=CleanupRun.Status.RUNNING).exclude(pk=run.pk).update(
        status=CleanupRun.Status.FAILED, finished_at=timezone.now(),
        error="interrupted: its process stopped before finishing; a later run went on with the work",
    )
    removable = removable_rows(target=target, policy=policy)
    if removable is None:
        return _finish(run, CleanupRun.Status.SUCCEEDED, "no max age set: every row is kept")
    lease_lost = False
    last_checkpoint = time.monotonic()

    def after_batch(progress: PurgeProgress) -> None:
        _record(run, progress)
        if watch:
            watch(progress)

    def checkpoint(progress: PurgeProgress) -> bool:
        """In the next batch's transaction (see purge_in_batches): False when the lease is lost."""
        nonlocal lease_lost, last_checkpoint
        # Every few seconds, not every batch: often enough that the admin shows a long run's
        # progress, and well within the lease's duration.
        if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
            last_checkpoint = time.monotonic()
            _record(run, progress)
            run.save(update_fields=["rows_matched", "rows_deleted", "batches"])
            lease_lost = not lease_renew(target=target.key, holder=holder)
        return not lease_lost

    target_seconds = policy.batch_target_ms / 1000 if policy.batch_target_ms else None
    progress = purge_in_batches(
        removable=removable,
        time_field=target.time_field,
        sizer=BatchSizer(size=policy.batch_size, target_seconds=target_seconds),
        deadline=time.monotonic() + policy.time_budget_seconds,
        dry_run=run.dry_run,
        keep=KeepNewest(target, policy.keep_last) if policy.keep_last else None,
        after_batch=after_batch,
        checkpoint=checkpoint,
    )
    _record(run, progress)
    if lease_lost:
        return _finish(run, CleanupRun.Status.FAILED, "lost the target's lease to another run; it goes on from here")
    if progress.stopped_on_budget:
        return _finish(run, CleanupRun.Status.STOPPED_ON_BUDGET, "")
    return _finish(run, CleanupRun.Status.SUCCEEDED, "")


def _record(run: CleanupRun, progress: PurgeProgress) -> None:
    run.rows_matched, run.rows_deleted, run.batches = progress.matched, progress.deleted, progress.batches


def _finish(run: CleanupRun, status: str, error: str) -> CleanupRun:
    run.status, run.error, run.finished_at = status, error, timezone.now()
    run.save()
    return run


def retention_sweep(
    *, keys: list[str] | None = None, include_disabled: bool = False, dry_run: bool = False, trigger: str,
    watch_target: Callable[[RetentionTarget, RetentionPolicy], ProgressWatcher | None] | None = None,
) -> list[CleanupRun]:
    """Run the named targets (every target when none is named), one after the other.

    A disabled policy's target is recorded as skipped, so the admin shows why it did not run,
    unless include_disabled (a person named it on the command line and means it).
    """
    unknown = unknown_targets(keys or [])
    if unknown:
        raise ValueError(f"unknown retention target(s): {', '.join(unknown)}; known: {', '.join(retention_targets())}")
    targets = retention_targets()
    runs = []
    for key in keys or list(targets):
        target = targets[key]
        policy = retention_policy_for(target=target)
        if not policy.enabled and not include_disabled:
            run = CleanupRun(target=key, trigger=trigger, dry_run=dry_run, started_at=timezone.now())
            runs.append(_finish(run, CleanupRun.Status.SKIPPED, "policy disabled"))
            continue
        watch = watch_target(target, policy) if watch_target else None
        runs.append(target_purge(target=target, policy=policy, dry_run=dry_run, trigger=trigger, watch=watch))
    return runs
