"""robots.txt (RFC 9309), fetched through the same fetcher and gate as every page, cached in
Redis for every worker, parsed by Protego (Scrapy's parser: wildcards, Crawl-delay).

What the fetch of robots.txt found decides, as the RFC says:
- 2xx: its rules apply;
- 4xx: "unavailable", anything may be fetched;
- 5xx, unreachable, timed out, refused by the gate: "unreachable", nothing may be fetched
  until it can be read (cached only briefly, so a recovered host is fetched again soon).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
import redis
from protego import Protego

from scraping.fetcher import Fetch, Outcome

CACHE_SECONDS = 24 * 3600
UNREACHABLE_CACHE_SECONDS = 10 * 60
# The RFC asks crawlers to read at least this much of a robots.txt.
MAX_BYTES = 500 * 1024
KEY_PREFIX = "scraping:robots:"


@dataclass(frozen=True)
class RobotsVerdict:
    allowed: bool
    crawl_delay_seconds: float | None = None
    detail: str = ""


def robots_url(url: str) -> str:
    return str(httpx2.URL(url).copy_with(path="/robots.txt", query=None, fragment=None))


def robots_verdict(url: str, *, product_token: str, fetch_robots: Callable[[str], Fetch],
                   cache: redis.Redis | None) -> RobotsVerdict:
    """May `url` be fetched by `product_token`, by its site's robots.txt (read at most once a day
    when there is a `cache`; a one-off fetch by hand reads it each time)?"""
    where = robots_url(url)
    record = _cached_or_fetched(where, fetch_robots, cache)
    if record["kind"] == "unavailable":
        return RobotsVerdict(True, detail=f"{where}: {record['detail']}: no rules, anything may be fetched")
    if record["kind"] == "unreachable":
        return RobotsVerdict(False, detail=f"{where} could not be read ({record['detail']}): "
                                           "nothing is fetched until it can be (RFC 9309)")
    rules = Protego.parse(record["rules"])
    delay = rules.crawl_delay(product_token)
    if not rules.can_fetch(url, product_token):
        return RobotsVerdict(False, delay, f"disallowed by {where} for {product_token}")
    return RobotsVerdict(True, delay, f"allowed by {where}")


def _cached_or_fetched(where: str, fetch_robots: Callable[[str], Fetch], cache: redis.Redis) -> dict:
    key = f"{KEY_PREFIX}{where}"
    cached = cache.get(key) if cache is not None else None
    if cached:
        return json.loads(cached)
    record = _record(fetch_robots(where))
    if cache is not None:
        cache.set(key, json.dumps(record),
                  ex=UNREACHABLE_CACHE_SECONDS if record["kind"] == "unreachable" else CACHE_SECONDS)
    return record


def _record(result: Fetch) -> dict:
    if result.outcome == Outcome.FETCHED:
        return {"kind": "rules", "rules": result.body.decode("utf-8", errors="replace"), "detail": result.detail}
    if result.outcome == Outcome.HTTP_ERROR and result.status and 400 <= result.status < 500:
        return {"kind": "unavailable", "detail": result.detail}
    if result.outcome == Outcome.TOO_LARGE:
        # Rules past the size a site may expect anyone to read are not rules anyone follows.
        return {"kind": "unavailable", "detail": f"over {MAX_BYTES} bytes, not read"}
    return {"kind": "unreachable", "detail": result.detail or str(result.outcome)}
