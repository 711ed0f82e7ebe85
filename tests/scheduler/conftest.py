import pytest
import redis


# broker_at is tests/conftest.py's.
@pytest.fixture
def queue(redis_url, broker_at):
    """The Redis list of the `default` queue, empty, with the app publishing to that Redis."""
    broker_at(redis_url)
    client = redis.Redis.from_url(redis_url)
    client.delete("default")
    yield client
    client.delete("default")
    client.close()
