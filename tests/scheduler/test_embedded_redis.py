import redis

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
