"""robots.txt read through the fetcher from a real server on loopback, cached in a real Redis."""

import pytest

from scraping.fetcher import fetch, outbound_client
from scraping.robots import MAX_BYTES, robots_verdict
from tests.scraping.conftest import SITE_ADDRESS
from tests.scraping.pages import LOOPBACK, resolving

TOKEN = "scheduled-maintenance"
ROBOTS = (b"User-agent: *\nDisallow: /private\n\n"
          b"User-agent: scheduled-maintenance\nDisallow: /ours-only\nCrawl-delay: 3\n")


@pytest.fixture
def verdict(site, shared_redis):
    with outbound_client(resolver=resolving({"shop.test": [[SITE_ADDRESS]]}), allowed=LOOPBACK) as client:
        def robots_fetch(url):
            return fetch(url, client=client, user_agent=TOKEN, ports=[site.port], allowed=LOOPBACK,
                         max_bytes=MAX_BYTES)

        yield lambda path: robots_verdict(site.url("shop.test", path), product_token=TOKEN,
                                          fetch_robots=robots_fetch, cache=shared_redis)


def test_our_group_of_rules_applies_with_its_crawl_delay(site, verdict):
    site.pages["/robots.txt"] = lambda page: page.reply(200, ROBOTS)
    assert not verdict("/ours-only/prices").allowed
    allowed = verdict("/private/but-not-for-us")
    assert allowed.allowed and allowed.crawl_delay_seconds == 3.0


def test_robots_txt_is_read_once_for_every_page_of_the_site(site, verdict):
    site.pages["/robots.txt"] = lambda page: page.reply(200, ROBOTS)
    for path in ("/a", "/b", "/ours-only/c"):
        verdict(path)
    assert [path for path, _ in site.requests] == ["/robots.txt"]


def test_a_missing_robots_txt_allows_everything(site, verdict):
    result = verdict("/anything")
    assert result.allowed and "no rules" in result.detail


@pytest.mark.parametrize("status", [500, 503])
def test_a_robots_txt_the_server_fails_to_give_disallows_everything(site, verdict, status):
    site.pages["/robots.txt"] = lambda page: page.reply(status, b"down")
    result = verdict("/anything")
    assert not result.allowed and "RFC 9309" in result.detail


def test_a_robots_txt_redirected_to_an_internal_address_disallows_and_is_not_fetched_there(site, verdict):
    site.pages["/robots.txt"] = lambda page: page.reply(301, Location="http://169.254.169.254/robots.txt")
    result = verdict("/anything")
    assert not result.allowed and "metadata" in result.detail
