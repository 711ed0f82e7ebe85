import time

import redis

from wiring import embedded_redis
from wiring.embedded_redis import EmbeddedRedis, running_url


def test_it_runs_a_real_password_protected_redis_on_loopback_and_stops_it(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", publish_url=True)
    url = server.start()
    try:
        assert url.startswith("redis://:") and "@127.0.0.1:" in url
        assert redis.Redis.from_url(url).set("probe", "1")
        without_password = redis.Redis(host="127.0.0.1", port=int(url.rsplit(":", 1)[1].split("/")[0]))
        try:
            without_password.get("probe")
            raise AssertionError("Redis answered without the password")
        except redis.AuthenticationError:
            pass
        assert running_url(tmp_path) == url
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert running_url(tmp_path) is None


def test_queued_data_survives_a_restart(tmp_path):
    with EmbeddedRedis(tmp_path) as first:
        redis.Redis.from_url(first.url).rpush("default", "a message")
    with EmbeddedRedis(tmp_path) as second:
        assert redis.Redis.from_url(second.url).lrange("default", 0, -1) == [b"a message"]


def test_supervised_it_is_started_again_with_its_data_when_killed_and_not_after_stop(tmp_path):
    said = []
    server = EmbeddedRedis(tmp_path / "redis", publish_url=True)
    url = server.start()
    server.supervise(said.append, first_backoff=1.0, longest_backoff=30.0)
    try:
        redis.Redis.from_url(url).rpush("default", "a message")
        first = server.process
        first.kill()
        first.wait(timeout=10)
        deadline = time.monotonic() + 30
        while not any("started again" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert said[0].startswith("Embedded Redis stopped on its own (exit status -9)"), said
        assert "started again on 127.0.0.1:" in said[1], said
        # The same address and password, the queued message kept, the URL still published.
        assert server.url == url and running_url(tmp_path) == url and server.process is not first
        assert redis.Redis.from_url(url).lrange("default", 0, -1) == [b"a message"]
    finally:
        server.stop()
    assert server.process.poll() is not None
    time.sleep(3 * embedded_redis.WATCH_SECONDS)
    assert server.process.poll() is not None and len(said) == 2  # stopped on request: not started again
