"""The gate every outbound request passes: a URL's shape first, then every address at the socket.

Checking a name and then handing the name to an HTTP client lets the client resolve it again,
to another address (DNS rebinding): changedetection.io's hole since 2026. Here the name is
resolved once per connection, inside the connection pool's network backend, every answer is
classified (scraping.addresses), one refused answer refuses the name, and the socket goes to
the address that was checked. TLS still verifies the URL's host name (httpcore sends it as the
SNI and checks the certificate against it), and every redirect hop, retry and pooled
reconnection comes through the same backend.

The URL is parsed once, by the parser of the client that sends it (httpx2's), so no second
parser can read it differently (GHSA-rph4-96w6-q594's backslash differential).
"""

import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as LookupTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

import httpcore2
import httpx2
import idna
from httpcore2._backends.sync import SyncBackend, SyncStream

from scraping.addresses import IPAddress, IPNetwork, refusal

SCHEMES = {"http": 80, "https": 443}
# Of a name's answers, the connection tries this many at most (each already checked).
MAX_ADDRESSES = 4
DNS_SECONDS = 5.0
# Whitespace and control characters are never part of a URL a person meant; backslashes are
# read as "/" by some parsers and as part of the user info by others.
FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")
# A host made only of numbers in C's inet_aton notations (decimal, 0x hex, 0 octal, 1 to 4
# parts): glibc resolves "0x7f.1", "2130706433" and "0177.0.0.1" to 127.0.0.1.
NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CANONICAL_IPV4 = re.compile(rf"^{OCTET}(\.{OCTET}){{3}}$")

Resolver = Callable[[str, int, float | None], list[IPAddress]]
# Kept-alive connections: about as many as the hosts one worker process fetches from within the
# keep-alive expiry (5 s), so the next fetch to a host reuses its connection (and TLS session).
POOL_LIMITS = httpx2.Limits(max_connections=20, max_keepalive_connections=20)
TIMEOUT = httpx2.Timeout(30.0, connect=5.0, read=15.0)


class Refused(Exception):
    """The gate refused a URL or an address; `rule` says which rule, for the run's output."""

    def __init__(self, url: str, rule: str, *, by_address: bool = False) -> None:
        super().__init__(f"refused by the gate: {url}: {rule}")
        self.url, self.rule = url, rule
        # Refused for where it leads (loopback, a private network...), not for how it is written.
        self.by_address = by_address

    @property
    def hint(self) -> str:
        """What a person can do about it, when there is something: reach their own network."""
        if not self.by_address:
            return ""
        return "A network of your own is reached by listing it in OUTBOUND_ALLOWED_NETWORKS."


@dataclass(frozen=True)
class Target:
    url: httpx2.URL
    host: str  # ASCII (IDNA), lower case, without the brackets of an IPv6 literal
    port: int


def url_target(text: str, *, ports: Iterable[int] = (), allowed: tuple[IPNetwork, ...] = ()) -> Target:
    """Where `text` would send a request, or Refused naming the rule it breaks.

    Only http and https, on their own ports or one of `ports` (what an admin allowed for a
    source); no user info; no host but a name, a canonical dotted quad or an IPv6 literal; an
    address literal must pass the address rule (names are checked when they are resolved).
    """
    if FORBIDDEN_CHARACTERS.search(text):
        raise Refused(text, "a URL may not hold spaces, control characters or backslashes")
    try:
        url = httpx2.URL(text)
    except (httpx2.InvalidURL, UnicodeError) as error:
        raise Refused(text, f"not a URL: {error}") from None
    if url.scheme not in SCHEMES:
        raise Refused(text, f"only http and https URLs are fetched, not {url.scheme or 'a relative URL'}")
    if url.userinfo:
        raise Refused(text, "a URL may not carry a user name or password")
    host = _host(text, url)
    port = url.port or SCHEMES[url.scheme]
    if port != SCHEMES[url.scheme] and port not in set(ports):
        raise Refused(text, f"port {port} is not allowed; only {SCHEMES[url.scheme]} for {url.scheme} "
                            "unless an admin allows another port on the source")
    try:
        literal = ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        why = refusal(literal, allowed=allowed)
        if why:
            raise Refused(text, why, by_address=True)
    return Target(url=url, host=host, port=port)


def _host(text: str, url: httpx2.URL) -> str:
    host = url.host.rstrip(".").lower() if url.host else ""
    if not host:
        raise Refused(text, "the URL has no host")
    if ":" in host:
        return host  # an IPv6 literal, which httpx2 has parsed as one
    parts = host.split(".")
    if all(NUMERIC_PART.match(part) for part in parts) and not CANONICAL_IPV4.match(host):
        raise Refused(text, f"{host!r} is a numeric host in an unusual form; write the address as four "
                            "decimal numbers (a.b.c.d)")
    try:
        # UTS 46 and IDNA 2008, which also refuse names over 253 characters.
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise Refused(text, f"{host!r} is not a valid host name: {error}") from None


_deadline = threading.local()


@contextmanager
def total_deadline(seconds: float):
    """Every lookup, connection, handshake, read and write of this thread, until the block ends,
    finishes by then (the fetcher sets it around one whole fetch)."""
    _deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at = None


def time_left(timeout: float | None) -> float | None:
    """`timeout`, shortened to what is left of this thread's total deadline; ReadTimeout once
    it has passed."""
    at = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise httpcore2.ReadTimeout("the fetch's total deadline passed")
    return left if timeout is None else min(timeout, left)


def system_resolver(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    """The machine's own resolver (/etc/hosts, then DNS), within a deadline: getaddrinfo has none.

    A lookup that runs past it is left to finish on its own thread, unwaited for.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resolve")
    try:
        lookup = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        answers = lookup.result(timeout=min(timeout or DNS_SECONDS, DNS_SECONDS))
    except LookupTimeout:
        raise httpcore2.ConnectTimeout(f"looking up {host} took longer than {DNS_SECONDS:.0f} s") from None
    except socket.gaierror as error:
        raise httpcore2.ConnectError(f"cannot resolve {host}: {error}") from None
    finally:
        pool.shutdown(wait=False)
    return list(dict.fromkeys(ip_address(sockaddr[0].split("%")[0]) for *_, sockaddr in answers))


class DeadlineStream(SyncStream):
    """A socket stream whose every read, write and TLS handshake waits at most until the total
    deadline, also once TLS has started (httpcore hands back a plain stream after the handshake)."""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return super().read(max_bytes, time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        super().write(buffer, time_left(timeout))

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None):
        stream = super().start_tls(ssl_context, server_hostname, time_left(timeout))
        return DeadlineStream(stream._sock)


class GatedBackend(SyncBackend):
    """httpcore's network backend with the address rule at connect: resolve once, check every
    answer, connect to a checked address and make sure the socket's peer is that address."""

    def __init__(self, *, resolver: Resolver = system_resolver, allowed: tuple[IPNetwork, ...] = ()) -> None:
        self.resolver, self.allowed = resolver, allowed

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> "DeadlineStream":
        addresses = self.resolver(host, port, time_left(timeout))
        for address in addresses:
            why = refusal(address, allowed=self.allowed)
            if why:
                # One refused answer refuses the name: a rebinding server mixes one in.
                raise Refused(f"{host}:{port}", f"{host} resolves to {why}", by_address=True)
        if not addresses:
            raise httpcore2.ConnectError(f"{host} has no address")
        failure: OSError | None = None
        for address in addresses[:MAX_ADDRESSES]:
            try:
                sock = socket.create_connection((str(address), port), time_left(timeout),
                                                source_address=None if local_address is None else (local_address, 0))
            except TimeoutError as error:
                failure = error
                continue
            except OSError as error:
                failure = error
                continue
            return DeadlineStream(self._checked(sock, address, socket_options))
        if isinstance(failure, TimeoutError):
            raise httpcore2.ConnectTimeout(f"connecting to {host} timed out") from failure
        raise httpcore2.ConnectError(f"cannot connect to {host}: {failure}") from failure

    @staticmethod
    def _checked(sock: socket.socket, address: IPAddress, socket_options) -> socket.socket:
        peer = ip_address(sock.getpeername()[0].split("%")[0])
        if peer.version == 6 and peer.ipv4_mapped is not None and isinstance(address, IPv4Address):
            peer = peer.ipv4_mapped
        if peer != address:
            sock.close()
            raise Refused(str(address), f"the connection reached {peer}, not the checked {address}")
        for option in socket_options or ():
            sock.setsockopt(*option)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class GatedTransport(httpx2.HTTPTransport):
    """httpx2's transport on a connection pool whose every connection passes the gate."""

    def __init__(self, *, resolver: Resolver = system_resolver, allowed: tuple[IPNetwork, ...] = (),
                 limits: httpx2.Limits = POOL_LIMITS) -> None:
        # trust_env=False: HTTP_PROXY and friends would send every request past the gate.
        super().__init__(trust_env=False, limits=limits)
        ssl_context = httpx2.create_ssl_context(verify=True, trust_env=False)
        # httpx2's transport takes no network backend; it only hands requests to self._pool, so
        # the pool it built (empty, never used) is replaced by the same pool on our backend.
        self._pool = httpcore2.ConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=GatedBackend(resolver=resolver, allowed=allowed),
        )


def gated_client(*, resolver: Resolver = system_resolver, allowed: tuple[IPNetwork, ...] = (),
                 timeout: httpx2.Timeout = TIMEOUT) -> httpx2.Client:
    """A client whose every connection passes the gate. Redirects are not followed by it: the
    fetcher follows them itself, each hop through url_target first."""
    transport = GatedTransport(resolver=resolver, allowed=allowed)
    return httpx2.Client(transport=transport, trust_env=False,
                         follow_redirects=False, timeout=timeout)
