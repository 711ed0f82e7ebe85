"""The beat scheduler class named in settings (CELERY_BEAT_SCHEDULER).

For now django-celery-beat's DatabaseScheduler, with two additions: it records that it is
alive (the admin warns when it stops), and when Redis cannot be reached each retry logs the
broker's URL (password masked), so the person reading the log knows which address is wrong.
"""

import logging
import os
import socket
import time

from django.db import DatabaseError
from django.utils import timezone
from django_celery_beat import schedulers

from scheduler.services import beat_heartbeat_record

logger = logging.getLogger(__name__)

# Beat loops every few seconds; one row update this often is enough to tell alive from stopped.
LIVENESS_EVERY_SECONDS = 15


class DatabaseScheduler(schedulers.DatabaseScheduler):
    def __init__(self, *args, **kwargs):
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = timezone.now()
        self._liveness_recorded = float("-inf")
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        self._record_liveness()
        return interval

    def _record_liveness(self) -> None:
        if time.monotonic() - self._liveness_recorded < LIVENESS_EVERY_SECONDS:
            return
        self._liveness_recorded = time.monotonic()
        try:
            beat_heartbeat_record(node=self.node, started_at=self.started_at)
        except DatabaseError:
            # The admin will show beat as stale, which is the truth; beat itself goes on.
            logger.exception("beat: could not record that it is alive")

    def _ensure_connected(self):
        address = self.connection.as_uri()

        def report_unreachable(exc, interval):
            logger.error(
                "beat: cannot reach the broker at %s: %s. Trying again in %.0f seconds...",
                address, exc, interval,
            )

        return self.connection.ensure_connection(
            report_unreachable, self.app.conf.broker_connection_max_retries
        )
