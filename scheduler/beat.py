"""The beat scheduler class named in settings (CELERY_BEAT_SCHEDULER).

For now django-celery-beat's DatabaseScheduler, with one change: when Redis cannot be
reached, each retry logs the broker's URL (password masked), so the person reading the log
knows which address is wrong.
"""

import logging

from django_celery_beat import schedulers

logger = logging.getLogger(__name__)


class DatabaseScheduler(schedulers.DatabaseScheduler):
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
