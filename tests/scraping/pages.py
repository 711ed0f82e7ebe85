"""A real HTTP server on loopback whose pages a test writes, and a resolver the tests control."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

from scraping.addresses import allowed_networks

LOOPBACK = allowed_networks(["127.0.0.0/8"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.requests.append((self.path, dict(self.headers)))
        page = self.server.pages.get(self.path.split("?")[0])
        if page is None:
            self.reply(404, b"not here")
        else:
            page(self)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.path, dict(self.headers)))
        self.server.posted.append((self.path, body))
        page = self.server.pages.get(self.path.split("?")[0])
        if page is None:
            self.reply(404, b"not here")
        else:
            page(self)

    def reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def trickle(self, pieces: int, every: float) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(pieces))
        self.end_headers()
        for _ in range(pieces):
            self.wfile.write(b".")
            self.wfile.flush()
            time.sleep(every)

    def log_message(self, *args):
        pass


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str) -> None:
        super().__init__((address, 0), Handler)
        self.pages, self.requests, self.posted = {}, [], []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-reply (a capped or timed-out fetch) is what the test wanted.
        pass

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, name: str, path: str = "/") -> str:
        return f"http://{name}:{self.port}{path}"


def resolving(answers: dict[str, list[str]], lookups: list | None = None):
    """A resolver the test controls: each name's answers, one list per lookup, the last repeated."""
    def resolve(host, port, timeout):
        if lookups is not None:
            lookups.append(host)
        queue = answers[host]
        return [ip_address(a) for a in (queue.pop(0) if len(queue) > 1 else queue[0])]
    return resolve
