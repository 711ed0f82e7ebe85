"""`manage.py scrape URL`: one fetch through the product's fetcher, printed, nothing stored."""

import io

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import run_manage, subprocess_env
from tests.scraping.conftest import SITE_ADDRESS
from tests.scraping.pages import LOOPBACK

PAGE = b"<html><body><h1>Prices</h1><p class='price'>Tea 3 EUR</p><p>Updated today</p></body></html>"


@pytest.fixture
def loopback_allowed(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK


def scrape(*args: str) -> str:
    out = io.StringIO()
    call_command("scrape", *args, stdout=out)
    return out.getvalue()


def test_it_prints_the_outcome_and_what_a_css_selector_extracts(site, loopback_allowed):
    site.pages["/"] = lambda page: page.reply(200, PAGE, Content_Type="text/html")
    printed = scrape(f"http://{SITE_ADDRESS}:{site.port}/", "--css", "p.price", "--allow-port", str(site.port))
    assert "fetched (HTTP 200)" in printed and "no rules, anything may be fetched" in printed
    assert printed.rstrip().endswith("css extract:\nTea 3 EUR")
    assert [path for path, _ in site.requests] == ["/robots.txt", "/"]


def test_robots_txt_is_obeyed_and_the_page_is_not_fetched(site, loopback_allowed):
    site.pages["/robots.txt"] = lambda page: page.reply(200, b"User-agent: *\nDisallow: /\n")
    with pytest.raises(CommandError, match="disallowed_by_robots"):
        scrape(f"http://{SITE_ADDRESS}:{site.port}/prices", "--allow-port", str(site.port))
    assert [path for path, _ in site.requests] == ["/robots.txt"]


def test_a_port_not_allowed_is_refused_before_anything_is_sent(site, loopback_allowed):
    with pytest.raises(CommandError, match="refused"):
        scrape(f"http://{SITE_ADDRESS}:{site.port}/")
    assert site.requests == []


def test_a_bad_expression_is_refused_naming_the_option():
    with pytest.raises(CommandError, match="--xpath: not a valid xpath expression"):
        scrape("http://example.com/", "--xpath", "//p[[")


@pytest.mark.parametrize(("url", "rule"), [
    ("http://169.254.169.254/latest/meta-data/", "link-local, where cloud metadata services answer"),
    ("http://127.0.0.1/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private network"),
    ("file:///etc/passwd", "only http and https"),
])
def test_the_command_line_refuses_internal_addresses_naming_the_rule_and_exits_non_zero(tmp_path, url, rule):
    done = run_manage("scrape", url, env=subprocess_env(DATA_DIR=str(tmp_path)))
    assert done.returncode != 0
    assert rule in done.stdout and "no content" in done.stderr
