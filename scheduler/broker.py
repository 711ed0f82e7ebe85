"""What the broker holds, read from its Redis directly, in kombu's layout: each Celery queue is a
list named after it (one more per priority step), and with late acknowledgement every message
delivered to a worker stays in the `unacked` hash until its task ends.

Used where a reading must not wait on a slow Redis (a scrape, the dashboard, a load balancer's
probe), and by beat to tell a sent run whose message Redis lost from one that waits its turn.
"""

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# A local Redis answers in well under a millisecond: one that takes longer is not answering,
# and a scrape, the dashboard or a load balancer's probe must not wait on it.
REDIS_TIMEOUT_SECONDS = 0.5


@contextmanager
def broker_client() -> Iterator[redis.Redis]:
    """The broker's Redis, with timeouts short enough for a scrape or a health probe; a broker
    URL redis-py cannot read (kombu accepts more schemes) raises redis.ConnectionError, as an
    unreachable Redis does."""
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_timeout=REDIS_TIMEOUT_SECONDS)
    except ValueError as error:
        raise redis.ConnectionError("CELERY_BROKER_URL is not a Redis URL") from error
    try:
        yield client
    finally:
        client.close()


def broker_answers() -> bool:
    """Whether the broker's Redis answers a PING (within REDIS_TIMEOUT_SECONDS); why not is logged."""
    try:
        with broker_client() as client:
            return bool(client.ping())
    except (redis.RedisError, OSError) as error:
        logger.warning("Redis (the broker) did not answer: %s", error)
        return False


def queue_lengths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue (the Redis list named after it, as kombu keeps it);
    None when Redis does not answer."""
    names = [queue.name for queue in settings.CELERY_TASK_QUEUES]
    try:
        with broker_client() as client:
            pipeline = client.pipeline(transaction=False)
            for name in names:
                pipeline.llen(name)
            return dict(zip(names, pipeline.execute(), strict=True))
    except (redis.RedisError, OSError):
        return None


# kombu.transport.redis: a message with a priority goes to `queue + SEP + step` of these steps,
# and delivered messages are kept by delivery tag in this hash (the transport's defaults: the
# product sets neither).
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"
UNACKED_KEY = "unacked"
# The message's own id in its headers (kombu's JSON: `, "id": "..."`; not root_id or parent_id).
MESSAGE_ID = re.compile(rb'[{,] "id": "([^"]+)"')
READ_CHUNK = 1000


def task_ids_held() -> set[str]:
    """The task id of every message the broker holds for the product's queues, waiting (at any
    priority) or delivered and not yet acknowledged. Raises redis.RedisError (or OSError) when
    Redis does not answer.

    The queues are read before the unacknowledged hash, in chunks: a message a worker takes
    meanwhile moves from the first to the second and is still seen, a message pushed meanwhile
    shifts the list and is read twice rather than missed. Only the moment between a worker's
    pop and its record in the hash is blind; callers look twice.
    """
    keys = [name if not step else f"{name}{PRIORITY_SEP}{step}"
            for name in (queue.name for queue in settings.CELERY_TASK_QUEUES) for step in PRIORITY_STEPS]
    held: set[str] = set()
    with broker_client() as client:
        for key in keys:
            start = 0
            while chunk := client.lrange(key, start, start + READ_CHUNK - 1):
                held.update(_ids_in(chunk))
                start += len(chunk)
        for _, delivered in client.hscan_iter(UNACKED_KEY, count=READ_CHUNK):
            held.update(_ids_in([delivered]))
    return held


def _ids_in(messages: list[bytes]) -> Iterator[str]:
    for message in messages:
        found = MESSAGE_ID.search(message)
        if found:
            yield found.group(1).decode()
