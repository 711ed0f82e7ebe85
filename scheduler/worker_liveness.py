"""Each worker records that it is alive from its own main process, whatever queues it reads.

The heartbeat schedule proves beat, Redis and a worker of the default queue work together; but a
worker that reads only the cleanup queue never runs it, and would look dead. Celery's worker
sends an event heartbeat every two seconds (task events are on); on it, at most every
a third of WorkerHeartbeat.STALE_AFTER, the worker's WorkerHeartbeat row is brought up to date.
"""

import logging
import time

from celery.signals import heartbeat_sent
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from scheduler.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

def record_every_seconds() -> float:
    return WorkerHeartbeat.STALE_AFTER.total_seconds() / 3


_last_recorded = {"at": float("-inf")}


@heartbeat_sent.connect
def worker_alive_record(sender=None, **_) -> None:
    if time.monotonic() - _last_recorded["at"] < record_every_seconds():
        return
    _last_recorded["at"] = time.monotonic()
    hostname = getattr(getattr(sender, "eventer", None), "hostname", None)
    if not hostname:
        return
    now = timezone.now()
    try:
        close_old_connections()
        # The beat count is the heartbeat schedule's; this only says the worker lives.
        WorkerHeartbeat.objects.update_or_create(worker=hostname, defaults={"last_beat_at": now},
                                                 create_defaults={"first_beat_at": now, "last_beat_at": now,
                                                                  "beats": 0})
    except DatabaseError:
        logger.warning("could not record that worker %s is alive", hostname, exc_info=True)
