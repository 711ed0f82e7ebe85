"""The worker's broker consumer: Celery's own, trying a lost broker again every second, and
closing the lost connection's channels while that connection can still close them.

Celery's consumer reconnects with kombu's default back-off (2 s, then 4, 6, ... up to 30 s
between tries), so after a minute without Redis the workers came back up to 12 s after it did,
while beat was already sending. One try is one TCP connect: once a second costs nothing, and
CELERY_BROKER_CONNECTION_MAX_RETRIES is None, so the worker never gives up. The log says the
first tries and then one a half-minute or so.
"""

import itertools
import logging
import warnings
from functools import partial

from celery.bootsteps import ConsumerStep
from celery.exceptions import CPendingDeprecationWarning
from celery.utils.threads import bound_open_broker_sockets
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.consumer import COLLECT_SOCKET_TIMEOUT

logger = logging.getLogger(__name__)
# What Celery warns on every loss of the broker unless the setting is True, though the choice is
# made (CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS): seven lines before the first
# reconnect message, every time.
CANCEL_TASKS_WARNING = r"\s*In Celery 5\.1 we introduced an optional breaking change"

RETRY_EVERY_SECONDS = 1.0
# The failed tries said in the log: each of the first, then one in every so many.
TRIES_SAID_EACH = 5
SAID_EVERY_TRIES = 30
# A close that finds a BRPOP pending reads its answer first, and with the broker gone that read
# raises before anything is closed (it clears the pending BRPOP, so the next close goes on).
CLOSE_ATTEMPTS = 2


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn):
        ensure_connection = partial(conn.ensure_connection, interval_start=RETRY_EVERY_SECONDS,
                                    interval_step=RETRY_EVERY_SECONDS, interval_max=RETRY_EVERY_SECONDS)

        def ensure_connection_saying_now_and_then(errback=None, *args, **kwargs):
            return ensure_connection(self._now_and_then(errback), *args, **kwargs)

        conn.ensure_connection = ensure_connection_saying_now_and_then
        return super().ensure_connected(conn)

    def _now_and_then(self, errback):
        """Celery's report of a failed try (an ERROR of three lines), for the first tries and then
        one in every SAID_EVERY_TRIES: a second apart, an outage of minutes filled the log."""
        if errback is None:
            return None
        tries = itertools.count(1)

        def said_now_and_then(exc, interval):
            attempt = next(tries)
            if attempt <= TRIES_SAID_EACH or attempt % SAID_EVERY_TRIES == 0:
                errback(exc, interval)
            elif interval > 0:
                self.broker_connection_retry_attempt += 1  # as Celery's counts it, for the next said

        return said_now_and_then

    def on_connection_error_after_connected(self, exc):
        # Celery 5.7 collects the lost connection, which detaches its transport but can leave
        # channels open, then drops it and restarts its steps with no connection at all. A
        # channel closed after that cannot fail quietly: the task channel's close hands its
        # unacknowledged messages back, and with the transport detached kombu's Redis channel
        # fails to build a client (AttributeError on the connection's hostname), which stopped
        # the worker with "Unrecoverable error" whenever Redis went away during a task (acks_late:
        # a running task's message is unacknowledged) while it waited for the next; a gossip
        # channel's close logged an ERROR with its traceback on every loss of the broker.
        # Closed here, first, each fails as a connection error, which is ignored: the messages
        # stay in Redis's unacknowledged set, a running task's is acknowledged when it ends if
        # Redis is back by then, and any other comes back after the visibility timeout.
        connection = self.connection
        if connection is not None:
            # As Celery does before its own teardown: a close reads a pending BRPOP's answer,
            # which from a broker gone silent (no reset) would never come.
            bound_open_broker_sockets(connection, COLLECT_SOCKET_TIMEOUT)
            try:
                for channel in self._channels_open(connection):
                    for _attempt in range(CLOSE_ATTEMPTS):
                        if getattr(channel, "closed", False):  # Redis's channels say; py-amqp's do not
                            break
                        connection.maybe_close_channel(channel)
            except Exception:
                # Only a head start on Celery's teardown below, which tries what is left; an
                # error here must not be the one that stops the worker.
                logger.debug("closing the lost broker connection's channels", exc_info=True)
        # Here, not once at import: Celery's logging set-up puts its 'always' first.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=CANCEL_TASKS_WARNING, category=CPendingDeprecationWarning)
            super().on_connection_error_after_connected(exc)

    def _channels_open(self, connection) -> list:
        """The consumer steps' channels (gossip's), and the default one the tasks are read from.

        `_default_channel` is read rather than `default_channel`, which would open one."""
        channels = [consumer.channel for step in self.steps if isinstance(step, ConsumerStep)
                    for consumer in step.consumers or [] if consumer.channel is not None]
        if connection._default_channel is not None:
            channels.append(connection._default_channel)
        return list(dict.fromkeys(channels))
