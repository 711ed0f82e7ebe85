"""The HTTP call job: one request to a URL a staff user scheduled ("call this URL", what cron
users schedule most), through the fetcher's gate (http and https only, never an internal
address, the port rules of every outbound request) and the host's turn among all workers, with
its status, duration and the first bytes of the answer in the run's output.

A schedule's kwargs say what to call:

    {"url": "https://ops.example.com/hooks/nightly", "method": "POST", "body": "{}",
     "headers": {"Content-Type": "application/json"},
     "secret_headers": {"Authorization": "JOB_SECRET_OPS_TOKEN"},
     "expected_status": [200, 204], "timeout": 30, "allowed_port": 8443}

`allowed_port` is what a source's allowed port is: besides 80 and 443, the one port the URL's
own host may be called on (a redirect to another host on it is refused).

A secret is never in the schedule's JSON, where every viewer of periodic tasks reads it: a secret
header names an environment variable, read by the worker when it calls. Only variables named
JOB_SECRET_... may be named, or a schedule could send SECRET_KEY or DATABASE_URL to any host.
"""

import os
import re
import time
from dataclasses import dataclass, field

from django.conf import settings

from scraping.fetcher import Fetch, Outcome
from scraping.gate import Refused, url_target
from scraping.outbound import host_limits, send

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
SECRET_PREFIX = "JOB_SECRET_"
# Kept of the answer in the run's output: enough to see what a server said, not a download.
ANSWER_BYTES = 2000
MAX_BODY_BYTES = 64 * 1024
TIMEOUT_RANGE = (1, 300)
DEFAULT_TIMEOUT = 30
# Set by the client or the gate for every request; a schedule may not replace them.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "user-agent"}
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
KNOWN_KEYS = {"url", "method", "headers", "secret_headers", "body", "expected_status", "timeout", "allowed_port"}


@dataclass(frozen=True)
class HttpCall:
    url: str
    method: str = "GET"
    headers: dict = field(default_factory=dict)
    secret_headers: dict = field(default_factory=dict)
    body: str = ""
    expected_status: tuple = ()  # empty: any 2xx
    timeout: float = DEFAULT_TIMEOUT
    ports: tuple = ()

    def expects(self, status: int) -> bool:
        return status in self.expected_status if self.expected_status else 200 <= status < 300

    @property
    def expected_text(self) -> str:
        return ", ".join(map(str, self.expected_status)) if self.expected_status else "2xx"


def http_call_of(kwargs: dict) -> tuple[HttpCall | None, list[str]]:
    """The call a schedule's kwargs describe, or None with what is wrong, each naming its key."""
    problems = []
    unknown = sorted(set(kwargs) - KNOWN_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(map(repr, unknown))}; the keys are {', '.join(sorted(KNOWN_KEYS))}")
    port = kwargs.get("allowed_port")
    ports = ()
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            problems.append(f"'allowed_port' must be a port number (1 to 65535), not {port!r}")
        else:
            ports = (port,)
    url = kwargs.get("url")
    if not isinstance(url, str) or not url:
        problems.append("'url' is required: the address to call, http:// or https://")
    else:
        try:
            url_target(url, ports=ports, allowed=settings.OUTBOUND_ALLOWED_NETWORKS)
        except Refused as refused:
            problems.append(" ".join(filter(None, [f"'url' {url!r} is refused by the outbound gate: {refused.rule}.",
                                                    refused.hint])))
    method = kwargs.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        problems.append(f"'method' must be one of {', '.join(METHODS)}, not {method!r}")
    headers = _header_problems("headers", kwargs.get("headers", {}), problems, value_check=_plain_value)
    secrets = _header_problems("secret_headers", kwargs.get("secret_headers", {}), problems, value_check=_secret_name)
    body = kwargs.get("body", "")
    if not isinstance(body, str):
        problems.append("'body' must be a string (JSON text too: quote it)")
    elif len(body.encode()) > MAX_BODY_BYTES:
        problems.append(f"'body' is over {MAX_BODY_BYTES} bytes")
    expected = kwargs.get("expected_status", [])
    if not isinstance(expected, list) or not all(isinstance(code, int) and 100 <= code <= 599 for code in expected):
        problems.append("'expected_status' must be a list of HTTP status codes (100 to 599), e.g. [200, 204]")
    timeout = kwargs.get("timeout", DEFAULT_TIMEOUT)
    low, high = TIMEOUT_RANGE
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not low <= timeout <= high:
        problems.append(f"'timeout' must be a number of seconds from {low} to {high}")
    if problems:
        return None, problems
    return HttpCall(url=url, method=method.upper(), headers=headers, secret_headers=secrets, body=body,
                    expected_status=tuple(expected), timeout=float(timeout), ports=ports), []


def _header_problems(key: str, given, problems: list[str], *, value_check) -> dict:
    if not isinstance(given, dict):
        problems.append(f"'{key}' must be an object of header name to value")
        return {}
    for name, value in given.items():
        if not HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
            problems.append(f"'{key}': {name!r} is not a header a schedule may set")
        elif not isinstance(value, str):
            problems.append(f"'{key}': the value of {name!r} must be a string")
        else:
            problem = value_check(value)
            if problem:
                problems.append(f"'{key}': {name!r} {problem}")
    return dict(given)


def _plain_value(value: str) -> str:
    return "holds a line break or a control character" if re.search(r"[\x00-\x1f\x7f]", value) else ""


def _secret_name(value: str) -> str:
    if not re.fullmatch(rf"{SECRET_PREFIX}[A-Z0-9_]+", value):
        return f"must name an environment variable starting with {SECRET_PREFIX} (the worker reads it), not {value!r}"
    return ""


class NotYourTurn(Exception):
    """The host was called too recently by some worker: try again after `seconds`."""

    def __init__(self, seconds: float, slot_ms: int) -> None:
        super().__init__(f"the host's turn comes in {seconds:.1f} s")
        self.seconds, self.slot_ms = seconds, slot_ms


class SecretMissing(Exception):
    pass


def http_call_send(call: HttpCall, *, slot_ms: int = 0) -> tuple[Fetch, float]:
    """Make the call when the host's turn has come (else NotYourTurn); (the fetch, seconds it took)."""
    host = url_target(call.url, ports=call.ports, allowed=settings.OUTBOUND_ALLOWED_NETWORKS).host
    turn = host_limits().turn(host, interval_seconds=settings.SCRAPER_HOST_INTERVAL_SECONDS, slot_ms=slot_ms)
    if not turn.go:
        raise NotYourTurn(turn.wait_seconds, turn.slot_ms)
    headers = dict(call.headers)
    for name, variable in call.secret_headers.items():
        value = os.environ.get(variable)
        if not value:
            raise SecretMissing(f"the environment variable {variable} (for the header {name!r}) is not set "
                                "on this worker")
        headers[name] = value
    began = time.monotonic()
    result = send(call.url, method=call.method, ports=call.ports, content=call.body.encode() or None,
                  extra_headers=headers, total_seconds=call.timeout, first_bytes=ANSWER_BYTES)
    return result, time.monotonic() - began


def call_output(call: HttpCall, result: Fetch, seconds: float) -> dict:
    output = {"url": call.url, "method": call.method, "outcome": str(result.outcome), "status": result.status,
              "duration_ms": round(seconds * 1000), "expected": call.expected_text, "detail": result.detail}
    if result.hops:
        output["redirects"] = result.hops
    if result.body:
        output["answer"] = result.body.decode("utf-8", "replace")
    return output


def failure_of(call: HttpCall, result: Fetch) -> str:
    """Why the call failed ("" when it was answered as expected)."""
    if result.status is None or result.outcome in (Outcome.REFUSED, Outcome.DISALLOWED):
        return f"{result.outcome}: {result.detail}"
    if not call.expects(result.status):
        return f"HTTP {result.status} where {call.expected_text} was expected ({result.detail})"
    return ""
