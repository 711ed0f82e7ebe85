"""The total deadline bounds the lookup, the TLS handshake and every read after it."""

import socket
import ssl
import subprocess
import threading
import time

import httpcore2
import pytest

from scraping.gate import DeadlineStream, system_resolver, time_left, total_deadline


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for shop.test, made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=shop.test", "-addext", "subjectAltName=DNS:shop.test",
                    "-keyout", folder / "key.pem", "-out", folder / "cert.pem"], check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def trickling_tls_server(certificate):
    """A TLS server on loopback that answers one byte every 0.25 s, for 40 bytes."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    listener = socket.create_server(("127.0.0.9", 0))

    def serve():
        connection, _ = listener.accept()
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(1024)
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"[:40]:
                    tls.sendall(bytes([byte]))
                    time.sleep(0.25)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_server_trickling_over_tls_is_cut_off_at_the_total_deadline(trickling_tls_server, certificate):
    client_context = ssl.create_default_context(cafile=str(certificate[0]))
    started = time.monotonic()
    with total_deadline(1.0), pytest.raises(httpcore2.ReadTimeout):
        stream = DeadlineStream(socket.create_connection(("127.0.0.9", trickling_tls_server)))
        stream = stream.start_tls(client_context, server_hostname="shop.test", timeout=5)
        assert isinstance(stream, DeadlineStream), "the stream after the handshake keeps the deadline"
        stream.write(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n", timeout=5)
        while stream.read(1, timeout=5):
            pass
    assert time.monotonic() - started < 2.5


def test_a_lookup_that_hangs_ends_at_the_deadline_without_waiting_for_it(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(3))
    started = time.monotonic()
    with total_deadline(0.5), pytest.raises(httpcore2.ConnectTimeout):
        system_resolver("slow.test", 80, time_left(5.0))
    assert time.monotonic() - started < 1.5
