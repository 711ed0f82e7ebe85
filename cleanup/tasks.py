"""Cleanup's Celery entry points, thin: each calls the retention sweep and returns its summary.

Beat's runs are recorded by the ledger's worker side (scheduler.worker.RecordedTask, the base of
every task): the summary returned here becomes the run's output in the ledger, and an exception
its error, so a failed target fails the run where every run is reviewed.
"""

from celery import current_task, shared_task

from cleanup.models import CleanupRun
from cleanup.services import retention_sweep
from scheduler.models import ScheduleRun
from scheduler.worker import run_kind_of


def _trigger() -> str:
    """Run now (the admin's, or a command's run_here_now) or beat's slot, as the ledger says."""
    manual = run_kind_of(current_task.request if current_task else None) == ScheduleRun.Kind.MANUAL
    return CleanupRun.Trigger.MANUAL if manual else CleanupRun.Trigger.SCHEDULE


def _sweep(keys: list[str] | None) -> dict:
    runs = retention_sweep(keys=keys, trigger=_trigger())
    summary = {run.target: {"status": run.status, "deleted": run.rows_deleted} for run in runs}
    failed = [run for run in runs if run.status == CleanupRun.Status.FAILED]
    if failed:
        # Fail the task too, so the failure shows in the task results and monitoring, not only here.
        raise RuntimeError("cleanup failed for " + "; ".join(f"{run.target}: {run.error}" for run in failed))
    return summary


@shared_task
def purge_expired_sessions() -> dict:
    return _sweep(["sessions"])


@shared_task
def retention_sweep_all() -> dict:
    return _sweep(None)
