"""The gate: a URL's shape before anything is sent, every resolved address at the socket."""

import pytest

from scraping.gate import Refused, gated_client, url_target
from tests.scraping.pages import LOOPBACK, PageServer, resolving

REFUSED_URLS = {
    "file:///etc/passwd": "only http and https",
    "gopher://127.0.0.1:6379/_INFO": "only http and https",
    "ftp://example.com/": "only http and https",
    "dict://example.com/": "only http and https",
    "data:text/plain,hello": "only http and https",
    "javascript:alert(1)": "only http and https",
    "//example.com/": "only http and https",
    "http://example.com@127.0.0.1/": "user name or password",
    "http://user:pass@example.com/": "user name or password",
    "http://127.0.0.1\\@example.com/": "backslashes",
    "http://exa mple.com/": "spaces",
    "http://example.com/\x00": "control characters",
    "http://example.com:22/": "port 22 is not allowed",
    "http://example.com:6379/": "port 6379 is not allowed",
    "http://example.com:11211/": "port 11211 is not allowed",
    "https://example.com:2375/": "port 2375 is not allowed",
    "http://example.com:443/": "port 443 is not allowed; only 80 for http",
    "http://0x7f.1/": "numeric host in an unusual form",
    "http://0x7f000001/": "numeric host in an unusual form",
    "http://2130706433/": "numeric host in an unusual form",
    "http://017700000001/": "numeric host in an unusual form",
    "http://0177.0.0.1/": "Invalid IPv4 address",  # httpx2's own parser refuses it first
    "http://127.1/": "numeric host in an unusual form",
    "http://0/": "numeric host in an unusual form",
    "http://127.0.0.1/": "loopback",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/": "metadata",
    "http://10.0.0.1/": "private network",
    "http://192.168.1.1/": "private network",
    "http://100.100.100.200/": "Alibaba Cloud metadata",
    "http://[::1]/": "IPv6 loopback",
    "http://[0:0:0:0:0:0:0:1]/": "IPv6 loopback",
    "http://[::ffff:127.0.0.1]/": "carries 127.0.0.1",
    "http://[::ffff:7f00:1]/": "carries 127.0.0.1",
    "http://[::ffff:169.254.169.254]/": "carries 169.254.169.254",
    "http://[fd12::1]/": "unique local",
    "http://%31%32%37.0.0.1/": "not a valid host name",
    "http://a..b/": "not a valid host name",
    f"http://{'a' * 60}.{'b' * 60}.{'c' * 60}.{'d' * 60}.{'e' * 60}.example/": "Domain too long",
    "http:///path": "no host",
}


@pytest.mark.parametrize(("url", "rule"), sorted(REFUSED_URLS.items()))
def test_a_url_the_gate_refuses_is_refused_before_anything_is_sent_naming_the_rule(url, rule):
    with pytest.raises(Refused) as refused:
        url_target(url)
    assert rule in refused.value.rule


def test_names_ports_an_admin_allowed_and_international_names_pass_the_shape_rule():
    assert url_target("https://Example.COM./a?b=1").host == "example.com"
    assert url_target("http://bücher.example/").host == "xn--bcher-kva.example"
    assert url_target("http://shop.example:8080/", ports=[8080]).port == 8080
    assert url_target("http://93.184.215.14/").host == "93.184.215.14"
    assert url_target("http://127.0.0.1:8080/", ports=[8080], allowed=LOOPBACK).port == 8080


@pytest.fixture
def server_on():
    """server_on(address): a real HTTP server on a loopback address and a free port, whose one
    page says where it was served and for which host."""
    started = []

    def start(address: str) -> PageServer:
        server = PageServer(address)
        server.pages["/"] = lambda page: page.reply(
            200, f"served on {page.server.server_address[0]} for {page.headers['Host']}".encode())
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_name_that_resolves_to_an_allowed_address_is_fetched_from_that_address(server_on):
    server = server_on("127.0.0.2")
    port = server.server_address[1]
    with gated_client(resolver=resolving({"shop.test": [["127.0.0.2"]]}), allowed=LOOPBACK) as client:
        response = client.get(f"http://shop.test:{port}/")
    assert response.text == f"served on 127.0.0.2 for shop.test:{port}"


def test_a_name_that_resolves_to_loopback_is_refused_without_the_allow_list(server_on):
    server = server_on("127.0.0.1")
    with gated_client(resolver=resolving({"shop.test": [["127.0.0.1"]]})) as client, pytest.raises(Refused) as refused:
        client.get(f"http://shop.test:{server.server_address[1]}/")
    assert "shop.test resolves to 127.0.0.1 is in 127.0.0.0/8: loopback" in refused.value.rule
    assert server.requests == []


def test_one_refused_answer_refuses_the_name_even_beside_allowed_ones(server_on):
    server = server_on("127.0.0.1")
    resolver = resolving({"mixed.test": [["127.0.0.1", "10.0.0.5"]]})
    with gated_client(resolver=resolver, allowed=LOOPBACK) as client, pytest.raises(Refused) as refused:
        client.get(f"http://mixed.test:{server.port}/")
    assert "10.0.0.5 is in 10.0.0.0/8: private network" in refused.value.rule
    assert server.requests == []


def test_a_name_whose_answers_change_is_looked_up_once_and_reached_at_the_checked_address(server_on):
    checked = server_on("127.0.0.3")
    lookups = []
    # A rebinding name: checked once at 127.0.0.3; any later lookup would say 127.0.0.4.
    resolver = resolving({"rebind.test": [["127.0.0.3"], ["127.0.0.4"]]}, lookups)
    with gated_client(resolver=resolver, allowed=LOOPBACK) as client:
        response = client.get(f"http://rebind.test:{checked.server_address[1]}/")
    assert response.text.startswith("served on 127.0.0.3")
    assert lookups == ["rebind.test"]


def test_proxy_variables_in_the_environment_are_ignored(server_on, monkeypatch):
    trap, page = server_on("127.0.0.5"), server_on("127.0.0.6")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.5:{trap.server_address[1]}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.5:{trap.server_address[1]}")
    with gated_client(resolver=resolving({"shop.test": [["127.0.0.6"]]}), allowed=LOOPBACK) as client:
        response = client.get(f"http://shop.test:{page.server_address[1]}/")
    assert response.status_code == 200 and trap.requests == []
