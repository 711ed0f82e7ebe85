"""The fetcher against a real server on loopback: redirects through the gate, caps, deadlines."""

import gzip
import time

import brotli
import pytest
from backports import zstd

from scraping.fetcher import Outcome, fetch, outbound_client, retry_after_seconds
from tests.scraping.conftest import SITE_ADDRESS
from tests.scraping.pages import LOOPBACK, resolving

AGENT = "scheduled-maintenance-tests (ops@example.com)"


@pytest.fixture
def client():
    with outbound_client(resolver=resolving({"shop.test": [[SITE_ADDRESS]]}), allowed=LOOPBACK) as client:
        yield client


def get(client, site, path, **options):
    return fetch(site.url("shop.test", path), client=client, user_agent=AGENT, ports=[site.port],
                 allowed=LOOPBACK, **options)


def test_a_page_is_fetched_with_the_fixed_user_agent_and_its_validators_kept(site, client):
    site.pages["/"] = lambda page: page.reply(200, b"<p>prices</p>", ETag='"v1"', Content_Type="text/html")
    result = get(client, site, "/")
    assert (result.outcome, result.status, result.body, result.etag) == (Outcome.FETCHED, 200, b"<p>prices</p>", '"v1"')
    assert site.requests[0][1]["User-Agent"] == AGENT


def test_a_304_to_the_validators_sent_is_not_modified(site, client):
    site.pages["/"] = lambda page: page.reply(304) if page.headers["If-None-Match"] == '"v1"' else page.reply(200)
    result = get(client, site, "/", etag='"v1"', last_modified="Tue, 01 Dec 2026 08:00:00 GMT")
    assert result.outcome == Outcome.NOT_MODIFIED
    assert site.requests[0][1]["If-Modified-Since"] == "Tue, 01 Dec 2026 08:00:00 GMT"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_followed_and_recorded(site, client, status):
    site.pages["/old"] = lambda page: page.reply(status, Location="/middle")
    site.pages["/middle"] = lambda page: page.reply(status, Location=site.url("shop.test", "/new"))
    site.pages["/new"] = lambda page: page.reply(200, b"here")
    result = get(client, site, "/old")
    assert (result.outcome, result.body) == (Outcome.FETCHED, b"here")
    assert result.hops == [site.url("shop.test", "/middle"), site.url("shop.test", "/new")]


@pytest.mark.parametrize(("location", "outcome", "detail"), [
    # Where the gate refuses: refused at that hop, nothing sent there.
    ("http://169.254.169.254/latest/meta-data/", Outcome.REFUSED, "metadata"),
    ("//169.254.169.254/latest/meta-data/", Outcome.REFUSED, "metadata"),
    ("http://[::ffff:a9fe:a9fe]/", Outcome.REFUSED, "carries 169.254.169.254"),
    ("http://10.0.0.5/", Outcome.REFUSED, "private network"),
    ("file:///etc/passwd", Outcome.REFUSED, "only http and https"),
    ("gopher://127.0.0.1:6379/_INFO", Outcome.REFUSED, "only http and https"),
    ("http://shop.test:6379/", Outcome.REFUSED, "port 6379 is not allowed"),
    # What cannot be followed at all: an HTTP error saying why, not a crash.
    ("", Outcome.HTTP_ERROR, "a redirect without a Location"),
    ("http://[::1", Outcome.HTTP_ERROR, "a Location that is not a URL"),
    ("http:////[/", Outcome.HTTP_ERROR, "a Location that is not a URL"),
])
def test_a_redirect_the_fetcher_may_not_or_cannot_follow_ends_the_fetch_saying_why(site, client, location, outcome,
                                                                                    detail):
    site.pages["/go"] = lambda page: page.reply(302, Location=location)
    result = get(client, site, "/go")
    assert result.outcome == outcome and detail in result.detail
    assert len(site.requests) == 1


def test_the_port_allowed_for_a_source_does_not_hold_for_another_host_it_redirects_to(site, client):
    site.pages["/go"] = lambda page: page.reply(302, Location=site.url("other.test", "/"))
    result = get(client, site, "/go")
    assert result.outcome == Outcome.REFUSED and f"port {site.port} is not allowed" in result.detail
    assert len(site.requests) == 1


def test_a_redirect_to_another_host_is_followed_only_if_its_check_robots_txt_allows_it(site, client):
    asked = []

    def other_host_check(hop: str) -> str:
        asked.append(hop)
        return "disallowed by http://other.test/robots.txt" if "private" in hop else ""
    site.pages["/go"] = lambda page: page.reply(302, Location="http://other.test/private")
    result = get(client, site, "/go", other_host_check=other_host_check)
    assert (result.outcome, result.detail) == (Outcome.DISALLOWED, "disallowed by http://other.test/robots.txt")
    site.pages["/same"] = lambda page: page.reply(302, Location="/here")
    site.pages["/here"] = lambda page: page.reply(200, b"ok")
    assert get(client, site, "/same", other_host_check=other_host_check).outcome == Outcome.FETCHED
    assert asked == ["http://other.test/private"]


def test_more_than_five_redirects_stop_the_fetch(site, client):
    site.pages["/loop"] = lambda page: page.reply(302, Location="/loop")
    result = get(client, site, "/loop")
    assert (result.outcome, result.detail) == (Outcome.HTTP_ERROR, "more than 5 redirects")
    assert len(site.requests) == 6


@pytest.mark.parametrize(("encoding", "squeeze"), [
    ("gzip", lambda data: gzip.compress(data, compresslevel=6)),
    ("br", lambda data: brotli.compress(data, quality=4)),
    ("zstd", lambda data: zstd.compress(data)),
    ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data, compresslevel=6))),
])
def test_a_compressed_bomb_stops_at_the_cap_counted_after_decompression(site, client, encoding, squeeze):
    bomb = squeeze(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 1024 * 1024
    site.pages["/bomb"] = lambda page: page.reply(200, bomb, Content_Encoding=encoding)
    result = get(client, site, "/bomb", max_bytes=2 * 1024 * 1024)
    assert result.outcome == Outcome.TOO_LARGE and "once decompressed" in result.detail


def test_every_encoding_the_fetcher_caps_is_offered_and_read(site, client):
    site.pages["/zstd"] = lambda page: page.reply(200, zstd.compress(b"<p>small</p>"), Content_Encoding="zstd")
    result = get(client, site, "/zstd")
    assert (result.outcome, result.body) == (Outcome.FETCHED, b"<p>small</p>")
    assert site.requests[-1][1]["Accept-Encoding"] == "gzip, deflate, br, zstd"


def test_a_declared_length_over_the_cap_is_not_read(site, client):
    site.pages["/big"] = lambda page: page.reply(200, b"x" * 4096)
    assert get(client, site, "/big", max_bytes=1024).outcome == Outcome.TOO_LARGE


def test_a_server_trickling_its_body_is_cut_off_at_the_total_deadline(site, client):
    site.pages["/slow"] = lambda page: page.trickle(pieces=50, every=0.2)
    started = time.monotonic()
    result = get(client, site, "/slow", total_seconds=1.0)
    assert result.outcome == Outcome.TIMED_OUT
    assert time.monotonic() - started < 5


def test_a_429_says_when_to_come_back(site, client):
    site.pages["/busy"] = lambda page: page.reply(429, b"slow down", Retry_After="120")
    result = get(client, site, "/busy")
    assert (result.outcome, result.status, result.retry_after_seconds) == (Outcome.HTTP_ERROR, 429, 120.0)


def test_retry_after_may_be_an_http_date_and_is_never_more_than_a_day():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("9" * 400) == retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT") == 24 * 3600
    assert retry_after_seconds("\u00b2") is None and retry_after_seconds("\uff11") is None  # digits, not ASCII
    assert 3500 < retry_after_seconds(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600)))
    assert retry_after_seconds("soon") is None


def test_a_closed_port_is_unreachable_not_an_error_of_the_product(site, client):
    site.shutdown()
    site.server_close()
    result = get(client, site, "/")
    assert result.outcome == Outcome.UNREACHABLE
