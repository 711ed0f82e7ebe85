from celery import shared_task

from scheduler.services import heartbeat_record


@shared_task(bind=True)
def heartbeat(self) -> dict:
    beat = heartbeat_record(worker=self.request.hostname)
    return {"worker": beat.worker, "beats": beat.beats, "at": beat.last_beat_at.isoformat()}
