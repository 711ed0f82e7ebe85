"""The worker's broker consumer: Celery's own, trying a lost broker again every second.

Celery's consumer reconnects with kombu's default back-off (2 s, then 4, 6, ... up to 30 s
between tries), so after a minute without Redis the workers came back up to 12 s after it did,
while beat was already sending. One try is one TCP connect: once a second costs nothing, and
CELERY_BROKER_CONNECTION_MAX_RETRIES is None, so the worker never gives up.
"""

from functools import partial

from celery.worker.consumer import Consumer as CeleryConsumer

RETRY_EVERY_SECONDS = 1.0


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn):
        conn.ensure_connection = partial(conn.ensure_connection, interval_start=RETRY_EVERY_SECONDS,
                                         interval_step=RETRY_EVERY_SECONDS, interval_max=RETRY_EVERY_SECONDS)
        return super().ensure_connected(conn)
