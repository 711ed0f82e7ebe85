"""Cleanup's Celery entry points, thin: each calls the retention sweep and returns its summary.

Beat's runs are recorded by the ledger's worker side (scheduler.worker.RecordedTask, the base of
every task): the summary returned here becomes the run's output in the ledger, and an exception
its error, so a failed target fails the run where every run is reviewed.
"""

from celery import shared_task

from cleanup.models import CleanupRun
from cleanup.services import retention_sweep


def _sweep(keys: list[str] | None) -> dict:
    runs = retention_sweep(keys=keys, trigger=CleanupRun.Trigger.SCHEDULE)
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
