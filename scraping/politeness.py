"""Per-host politeness shared by every worker on every machine, kept in Redis.

Celery's `rate_limit` is per worker process and per task, useless for "at most one request
every two seconds to this host, cluster-wide". Here each host has:

- a request rate, as GCRA (one key holding the host's "theoretical arrival time", moved on by
  one interval per request by an atomic Lua script): `turn()` says go, or how long to wait;
- a pause that a 429 or 503 with Retry-After sets (`pause()` moves the arrival time on);
- a cap on requests in flight at once (a sorted set of holders that expire, so a killed worker
  frees its place), so one slow host cannot hold every worker.

Time is Redis's own clock (TIME inside the scripts), so workers whose clocks disagree still
space their requests correctly. A caller told to wait never sleeps: it sends its task again for
later (the worker stays free for other work).
"""

from dataclasses import dataclass

import redis

KEY_PREFIX = "scraping:host:"

# KEYS[1]: the host's arrival time (ms); KEYS[2]: the last place handed out in its queue of
# waiting requests (ms). ARGV[1]: interval (ms). Returns {1, 0} to go now, or {0, ms to wait}.
# With a burst of one, requests are at least an interval apart (KEYS[1] alone decides). A
# request told to wait is given the next free place in the queue, not the same moment as every
# other waiter, so the waiters come back one interval apart instead of all at once.
TURN = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat > now then
  local place = math.max(tonumber(redis.call('GET', KEYS[2]) or 0) + interval, tat)
  redis.call('SET', KEYS[2], place, 'PX', place - now + 1000)
  return {0, place - now}
end
redis.call('SET', KEYS[1], now + interval, 'PX', interval + 1000)
return {1, 0}
"""

# KEYS[1]: the host's arrival time (ms). ARGV[1]: pause (ms). The arrival time only moves on.
PAUSE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local until_ms = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if until_ms > tat then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return until_ms - now
"""

# KEYS[1]: the host's holders (sorted set, score = expiry ms). ARGV: cap, holder, hold (ms).
# Returns {1, 0} with the place taken, or {0, ms until the first place frees}.
ENTER = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
return {1, 0}
"""


@dataclass(frozen=True)
class Turn:
    go: bool
    wait_seconds: float = 0.0


class HostLimits:
    """The per-host rate, pauses and in-flight cap of every worker, in one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._turn = client.register_script(TURN)
        self._pause = client.register_script(PAUSE)
        self._enter = client.register_script(ENTER)
        self._client = client

    def turn(self, host: str, *, interval_seconds: float) -> Turn:
        """May a request to `host` go now, at most one per `interval_seconds` across all workers?
        If not, `wait_seconds` is this request's place in the host's queue: ask again then."""
        go, wait_ms = self._turn(keys=[f"{KEY_PREFIX}{host}:next", f"{KEY_PREFIX}{host}:queue"],
                                 args=[max(1, round(interval_seconds * 1000))])
        return Turn(bool(go), wait_ms / 1000)

    def pause(self, host: str, *, seconds: float) -> None:
        """No request to `host` before `seconds` from now (a Retry-After, a backoff)."""
        self._pause(keys=[f"{KEY_PREFIX}{host}:next"], args=[max(1, round(seconds * 1000))])

    def enter(self, host: str, *, holder: str, cap: int, hold_seconds: float) -> Turn:
        """Take one of `cap` places for requests in flight to `host`, for at most `hold_seconds`."""
        go, wait_ms = self._enter(keys=[f"{KEY_PREFIX}{host}:in-flight"],
                                  args=[cap, holder, max(1, round(hold_seconds * 1000))])
        return Turn(bool(go), wait_ms / 1000)

    def leave(self, host: str, *, holder: str) -> None:
        self._client.zrem(f"{KEY_PREFIX}{host}:in-flight", holder)
