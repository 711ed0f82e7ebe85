import pytest
import redis

from tests.scraping.pages import PageServer

SITE_ADDRESS = "127.0.0.7"


@pytest.fixture
def site():
    """A real HTTP server on a loopback address; tests write its pages (`site.pages[path]`)."""
    server = PageServer(SITE_ADDRESS)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def shared_redis(redis_url):
    """The test session's real Redis, empty for this test, as every worker shares it."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
