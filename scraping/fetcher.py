"""The one fetcher every outbound request of the product goes through (sources, robots.txt, test
fetches, and later webhooks): the gate at every hop, bounded in time and size, and every outcome
named for the run's output.

- Redirects are followed here, at most MAX_REDIRECTS, each hop through the gate's URL rule and,
  when it connects, its socket rule.
- The body is counted after decompression, piece by piece (httpx2 inflates in pieces of at most
  1 MiB), so a small compressed bomb stops at the cap instead of filling memory.
- A total deadline bounds the whole fetch: the lookup, every connection attempt, the TLS
  handshake and every socket read and write wait at most for what is left of it (the gate's
  DeadlineStream), so a server trickling its headers or body is cut off.
- Conditional GET: the validators of the last fetch are sent, and a 304 is "not modified".
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx2

from scraping.addresses import IPNetwork
from scraping.gate import Refused, Resolver, gated_client, system_resolver, total_deadline, url_target

MAX_REDIRECTS = 5
MAX_BYTES = 5 * 1024 * 1024
TOTAL_SECONDS = 30.0
REDIRECTS = {301, 302, 303, 307, 308}
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


class Outcome(StrEnum):
    FETCHED = "fetched"
    NOT_MODIFIED = "not_modified"
    REFUSED = "refused"  # by the gate; never retried
    DISALLOWED = "disallowed_by_robots"
    HTTP_ERROR = "http_error"
    TOO_LARGE = "too_large"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"


@dataclass
class Fetch:
    """What one fetch found: its outcome, and what the run's output and the next fetch need."""

    url: str
    outcome: Outcome
    detail: str = ""
    status: int | None = None
    final_url: str = ""
    body: bytes = b""
    content_type: str = ""
    etag: str = ""
    last_modified: str = ""
    retry_after_seconds: float | None = None
    hops: list[str] = field(default_factory=list)

    def as_output(self) -> dict:
        """The fetch as it goes into the run ledger's output (without the body)."""
        output = {"url": self.url, "outcome": str(self.outcome), "status": self.status, "detail": self.detail}
        if self.hops:
            output["redirects"] = self.hops
        if self.outcome == Outcome.FETCHED:
            output["bytes"] = len(self.body)
        return output


def fetch(url: str, *, client: httpx2.Client, user_agent: str, ports=(), allowed: tuple[IPNetwork, ...] = (),
          etag: str = "", last_modified: str = "", max_bytes: int = MAX_BYTES,
          total_seconds: float = TOTAL_SECONDS, other_host_check: Callable[[str], str] | None = None,
          method: str = "GET", content: bytes | None = None, extra_headers: dict | None = None,
          first_bytes: int | None = None) -> Fetch:
    """GET `url` through the gate; never raises for what a server or the network does.

    `ports` (what an admin allowed besides 80 and 443) hold for `url`'s own host only: a redirect
    to another host on such a port is refused. `other_host_check(hop)` is asked about a redirect
    to another host before it is followed (that host's robots.txt); what it returns, when not
    empty, says why the hop is disallowed. Another `method` (a webhook's POST of `content`) is
    sent once and never redirected: a 3xx is its answer, an HTTP error. With `first_bytes`, the
    first that many bytes of any answer are kept, an error's too, and a longer one is cut there
    rather than refused (an HTTP call job records how it was answered).
    """
    result = Fetch(url=url, outcome=Outcome.UNREACHABLE)
    headers = {**(extra_headers or {}), "User-Agent": user_agent}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current, origin = url, None
    try:
        with total_deadline(total_seconds):
            for _ in range(MAX_REDIRECTS + 1):
                target = url_target(current, ports=ports, allowed=allowed)
                if origin is None:
                    origin = target.host
                elif target.host != origin:
                    # The allowed port is the source's host's, not every host's.
                    url_target(current, allowed=allowed)
                    refusal = other_host_check(current) if other_host_check else ""
                    if refusal:
                        result.outcome, result.detail = Outcome.DISALLOWED, refusal
                        return result
                with client.stream(method, target.url, headers=headers, content=content) as response:
                    if response.status_code in REDIRECTS and method == "GET":
                        current = _next_hop(target.url, response.headers.get("Location", ""))
                        result.hops.append(current)
                        continue
                    if first_bytes is not None:
                        return _read_first(result, response, first_bytes)
                    return _read(result, response, max_bytes)
            result.outcome, result.detail = Outcome.HTTP_ERROR, f"more than {MAX_REDIRECTS} redirects"
    except BadRedirect as bad:
        result.outcome, result.detail = Outcome.HTTP_ERROR, str(bad)
    except Refused as refused:
        result.outcome, result.detail = Outcome.REFUSED, refused_detail(url, refused)
    except httpx2.TimeoutException as error:
        result.outcome, result.detail = Outcome.TIMED_OUT, str(error) or type(error).__name__
    except (httpx2.TransportError, httpx2.DecodingError) as error:
        result.outcome, result.detail = Outcome.UNREACHABLE, f"{type(error).__name__}: {error}"
    return result


class BadRedirect(Exception):
    pass


def _next_hop(url: httpx2.URL, location: str) -> str:
    if not location.strip():
        raise BadRedirect("a redirect without a Location")
    try:
        return str(url.join(location))
    except (httpx2.InvalidURL, ValueError) as error:
        raise BadRedirect(f"a redirect to a Location that is not a URL ({error})") from None


def _read(result: Fetch, response: httpx2.Response, max_bytes: int) -> Fetch:
    result.status, result.final_url = response.status_code, str(response.url)
    result.content_type = response.headers.get("Content-Type", "")
    result.etag = response.headers.get("ETag", "")
    result.last_modified = response.headers.get("Last-Modified", "")
    if response.status_code == 304:
        result.outcome, result.detail = Outcome.NOT_MODIFIED, "304 Not Modified"
        return result
    if response.status_code >= 300:
        result.outcome, result.detail = Outcome.HTTP_ERROR, f"HTTP {response.status_code} {response.reason_phrase}"
        result.retry_after_seconds = retry_after_seconds(response.headers.get("Retry-After", ""))
        return result
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes and not response.headers.get("Content-Encoding"):
        result.outcome, result.detail = Outcome.TOO_LARGE, f"{int(declared)} bytes declared, over {max_bytes}"
        return result
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > max_bytes:
            result.outcome, result.detail = Outcome.TOO_LARGE, f"over {max_bytes} bytes once decompressed"
            return result
    result.outcome, result.body = Outcome.FETCHED, bytes(body)
    result.detail = f"HTTP {response.status_code}"
    return result


def _read_first(result: Fetch, response: httpx2.Response, first_bytes: int) -> Fetch:
    result.status, result.final_url = response.status_code, str(response.url)
    result.content_type = response.headers.get("Content-Type", "")
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) >= first_bytes:
            break
    result.body = bytes(body[:first_bytes])
    result.outcome = Outcome.FETCHED if response.status_code < 300 else Outcome.HTTP_ERROR
    result.detail = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    return result


def refused_detail(url: str, refused: Refused) -> str:
    """The rule, and where it was met when that is not `url` itself (a redirect, a resolved name)."""
    return refused.rule if refused.url == url else f"{refused.url}: {refused.rule}"


def retry_after_seconds(value: str) -> float | None:
    """Retry-After as seconds from now: a number of seconds, or an HTTP date (RFC 9110); never
    more than MAX_RETRY_AFTER_SECONDS, whatever a server asks."""
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"[0-9]+", value):
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER_SECONDS)


def outbound_client(*, resolver: Resolver = system_resolver, allowed: tuple[IPNetwork, ...] = ()) -> httpx2.Client:
    """The gated client the fetcher sends with."""
    return gated_client(resolver=resolver, allowed=allowed)
