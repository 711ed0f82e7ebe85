# The scraping tests' loopback site and shared Redis: an HTTP call goes out the way a fetch does.
from tests.scraping.conftest import fetching, shared_redis, site  # noqa: F401
