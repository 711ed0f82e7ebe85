import pytest
import redis

from wiring.celery import app as celery_app
from wiring.celery import broker_connections_forget


@pytest.fixture
def broker_at():
    """Points the Celery app at a broker URL for one test."""
    original = celery_app.conf.broker_url

    def point(url: str) -> None:
        celery_app.conf.broker_url = url
        broker_connections_forget()

    yield point
    point(original)


@pytest.fixture
def queue(redis_url, broker_at):
    """The Redis list of the `default` queue, empty, with the app publishing to that Redis."""
    broker_at(redis_url)
    client = redis.Redis.from_url(redis_url)
    client.delete("default")
    yield client
    client.delete("default")
    client.close()
