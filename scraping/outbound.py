"""The fetcher as this process uses it, configured from settings: one gated client per process
(its pooled connections reused from fetch to fetch), the resolver with OUTBOUND_HOSTS in front
of the system's, and the Redis every worker shares for robots.txt and per-host limits.

Everything that makes a request goes through here: a source's fetch, Test fetch, `scrape URL` and
robots.txt through `get()`, webhooks and HTTP call jobs through `send()`.
"""

import json
import os
import threading
from collections.abc import Callable
from ipaddress import ip_address

import httpx2
import redis
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from scraping import robots
from scraping.addresses import IPAddress
from scraping.fetcher import MAX_BYTES, Fetch, fetch, outbound_client
from scraping.gate import system_resolver
from scraping.politeness import HostLimits

PRODUCT_TOKEN = "scheduled-maintenance"

_local = threading.local()


def user_agent() -> str:
    """A fixed User-Agent that says who fetches and how to reach them; the product never poses
    as a browser."""
    return f"{PRODUCT_TOKEN}/0.1 (+mailto:{settings.SCRAPER_CONTACT})"


def configured_resolver(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    """OUTBOUND_HOSTS first (a fixed answer, as /etc/hosts gives one), then the system's resolver.
    Either way the gate classifies the answer; a fixed name is not trusted more than DNS."""
    fixed = settings.OUTBOUND_HOSTS.get(host.lower().rstrip("."))
    if fixed is not None:
        return [ip_address(fixed)]
    return system_resolver(host, port, timeout)


def _per_process(name: str, settings_used: tuple, make):
    """One `make()` per process and thread while `settings_used` stay the same: a forked pool
    child makes its own, never sharing the parent's sockets."""
    key = (os.getpid(), settings_used)
    held = getattr(_local, name, None)
    if held is None or held[0] != key:
        if held is not None and hasattr(held[1], "close"):
            held[1].close()
        held = (key, make())
        setattr(_local, name, held)
    return held[1]


def client() -> httpx2.Client:
    allowed = settings.OUTBOUND_ALLOWED_NETWORKS
    # The resolver reads OUTBOUND_HOSTS itself; the allowed networks are the transport's own.
    return _per_process("client", allowed, lambda: outbound_client(resolver=configured_resolver, allowed=allowed))


def shared_redis() -> redis.Redis:
    """The broker's Redis, which every worker on every machine reaches."""
    url = settings.CELERY_BROKER_URL
    return _per_process("redis", url, lambda: redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5))


def host_limits() -> HostLimits:
    return _per_process("host_limits", settings.CELERY_BROKER_URL, lambda: HostLimits(shared_redis()))


def get(url: str, *, ports: tuple[int, ...] = (), etag: str = "", last_modified: str = "",
        max_bytes: int = MAX_BYTES, robots_cache: redis.Redis | None = None, of_robots: bool = False) -> Fetch:
    """GET `url` through the gate with this process's client; never raises for what the server
    or the network does. A redirect to another host is followed only if that host's robots.txt
    allows it (cached in `robots_cache` when given), except for a robots.txt itself (`of_robots`),
    which RFC 9309 lets redirect anywhere."""
    check = None if of_robots else (lambda hop: robots_refusal(hop, cache=robots_cache))
    return fetch(url, client=client(), user_agent=user_agent(), ports=ports,
                 allowed=settings.OUTBOUND_ALLOWED_NETWORKS, etag=etag, last_modified=last_modified,
                 max_bytes=max_bytes, other_host_check=check)


def robots_verdict(url: str, *, cache: redis.Redis | None, ports: tuple[int, ...] = (),
                   fetch_robots: Callable[[str], Fetch] | None = None) -> robots.RobotsVerdict:
    """What `url`'s robots.txt says about us, read by `fetch_robots` (by default a plain get)."""
    fetch_robots = fetch_robots or (lambda where: get(where, ports=ports, max_bytes=robots.MAX_BYTES, of_robots=True))
    return robots.robots_verdict(url, product_token=PRODUCT_TOKEN, cache=cache, fetch_robots=fetch_robots)


def robots_refusal(url: str, *, cache: redis.Redis | None) -> str:
    """Why robots.txt disallows `url` for us, or "" when it allows it."""
    verdict = robots_verdict(url, cache=cache)
    return "" if verdict.allowed else verdict.detail


def send(url: str, *, method: str, ports: tuple[int, ...] = (), **options) -> Fetch:
    """Any other request through the gate with this process's client (`options` as fetch takes
    them): a webhook's POST, an HTTP call job's request."""
    return fetch(url, client=client(), user_agent=user_agent(), allowed=settings.OUTBOUND_ALLOWED_NETWORKS,
                 ports=ports, method=method, **options)


def post_json(url: str, payload: dict, *, max_bytes: int = 64 * 1024) -> Fetch:
    """POST `payload` as JSON to `url` through the gate (a webhook): once, never redirected."""
    body = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True).encode()
    return send(url, method="POST", ports=settings.WEBHOOK_ALLOWED_PORTS, max_bytes=max_bytes, content=body,
                extra_headers={"Content-Type": "application/json"})
