"""The scheduler's Celery entry points.

Every task of this app, like every task beat sends, runs inside the run ledger's worker side
(scheduler.worker.RecordedTask, the app's base task class): a message from beat marks its
ledger row running, keeps a lease on it while the task runs, and records the outcome, output
and error there. A task called directly (tests, the shell) runs unrecorded.
"""

from celery import shared_task

from scheduler.services import heartbeat_record


@shared_task(bind=True)
def heartbeat(self) -> dict:
    beat = heartbeat_record(worker=self.request.hostname)
    return {"worker": beat.worker, "beats": beat.beats, "at": beat.last_beat_at.isoformat()}
