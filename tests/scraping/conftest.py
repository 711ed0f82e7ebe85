import pytest
import redis

from tests.scraping.pages import LOOPBACK, PageServer

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


@pytest.fixture
def fetching(settings, shared_redis, redis_url, site):
    """What a worker fetching sources has, pointed at the loopback site: the test Redis for
    robots.txt and host limits, loopback allowed, the name shop.test resolving to the site, and a
    host interval short enough that a test's fetches one after another are not deferred."""
    settings.CELERY_BROKER_URL = redis_url
    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK
    settings.OUTBOUND_HOSTS = {"shop.test": SITE_ADDRESS}
    settings.SCRAPER_HOST_INTERVAL_SECONDS = 0.001
    return site
