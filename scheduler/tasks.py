"""The scheduler's Celery entry points.

Every task of this app, like every task beat sends, runs inside the run ledger's worker side
(scheduler.worker.RecordedTask, the app's base task class): a message from beat marks its
ledger row running, keeps a lease on it while the task runs, and records the outcome, output
and error there. A task called directly (tests, the shell) runs unrecorded.
"""

from celery import shared_task
from django.utils.dateparse import parse_datetime

from scheduler.services import heartbeat_record
from scheduler.worker import DATABASE_DOWN, DATABASE_WAIT_SECONDS, run_finish

# The outcome of a run finished while the database was unreachable is kept this long at most;
# by then lost_runs_close has recorded the run as lost anyway.
OUTCOME_TRIES = 3600 // DATABASE_WAIT_SECONDS


@shared_task(bind=True)
def heartbeat(self) -> dict:
    beat = heartbeat_record(worker=self.request.hostname)
    return {"worker": beat.worker, "beats": beat.beats, "at": beat.last_beat_at.isoformat()}


@shared_task(bind=True, max_retries=OUTCOME_TRIES)
def run_outcome_write(self, *, run_id: int, worker: str, succeeded: bool, output=None, error: str = "",
                      task_id: str = "", started_at: str | None = None, skipped: str = "") -> dict:
    """Write the outcome of a run that finished while the database could not be reached (sent by
    scheduler.worker), trying again through Celery until it answers."""
    try:
        run_finish(run_id=run_id, worker=worker, succeeded=succeeded, output=output, error=error, task_id=task_id,
                   started_at=parse_datetime(started_at) if started_at else None, skipped=skipped)
    except DATABASE_DOWN:
        raise self.retry(countdown=DATABASE_WAIT_SECONDS) from None
    return {"run": run_id, "succeeded": succeeded}


# The worker's own, not a job: never offered or accepted as a schedule's task.
run_outcome_write.schedulable = False
