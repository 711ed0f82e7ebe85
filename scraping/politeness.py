"""Per-host politeness shared by every worker on every machine, kept in Redis.

Celery's `rate_limit` is per worker process and per task, useless for "at most one request
every two seconds to this host, cluster-wide". Here each host has:

- a request rate, as a queue of slots one interval apart (one key holding the next free slot,
  moved on by an atomic Lua script): `turn()` says go, or which slot is this request's and how
  long until it comes;
- a pause that a 429 or 503 with Retry-After sets (`pause()`), which outranks every slot;
- a cap on requests in flight at once (a sorted set of holders that expire, so a killed worker
  frees its place), so one slow host cannot hold every worker.

Time is Redis's own clock (TIME inside the scripts), so workers whose clocks disagree still
space their requests correctly. A caller told to wait never sleeps: it sends its task again for
later (the worker stays free for other work).
"""

from dataclasses import dataclass

import redis

KEY_PREFIX = "scraping:host:"

# KEYS[1]: the host's next free slot (ms); KEYS[2]: until when it is paused (ms); KEYS[3]: when a
# request to it last went (ms). ARGV[1]: interval (ms); ARGV[2]: the slot this request was given
# earlier (ms), or 0. Returns {1, 0, 0} to go now, or {0, ms to wait, the slot reserved for it}.
#
# Two rules. The hard one: a request goes only once an interval has passed since the last one
# went (KEYS[3]), whoever asks, so waiters coming back late together still go one by one. The
# order: a request that may not go is given a slot of its own, one interval after the last one
# handed out (KEYS[1]), and comes back for it; then it goes as soon as the hard rule lets it,
# keeping its slot if it is a little early, instead of joining the back of the queue. A pause
# (Retry-After) outranks both: the waiters ask again, for a slot after it.
TURN = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local paused = tonumber(redis.call('GET', KEYS[2]) or 0)
if paused > now then
  return {0, paused - now, 0}
end
local earliest = tonumber(redis.call('GET', KEYS[3]) or 0) + interval
local reserved = tonumber(ARGV[2])
if reserved == 0 then
  reserved = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
  redis.call('SET', KEYS[1], reserved + interval, 'PX', reserved + interval - now + 1000)
end
local go_at = math.max(reserved, earliest)
if go_at <= now then
  redis.call('SET', KEYS[3], now, 'PX', interval + 1000)
  return {1, 0, 0}
end
return {0, go_at - now, reserved}
"""

# KEYS[1]: the host's next free slot (ms); KEYS[2]: until when it is paused (ms). ARGV[1]:
# pause (ms). A pause only lengthens, and no slot is handed out before it ends.
PAUSE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local until_ms = now + tonumber(ARGV[1])
if until_ms > tonumber(redis.call('GET', KEYS[2]) or 0) then
  redis.call('SET', KEYS[2], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
if until_ms > tonumber(redis.call('GET', KEYS[1]) or 0) then
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
    # The slot (Redis time, ms) reserved for this request: ask again with it once it has come.
    slot_ms: int = 0


class HostLimits:
    """The per-host rate, pauses and in-flight cap of every worker, in one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._turn = client.register_script(TURN)
        self._pause = client.register_script(PAUSE)
        self._enter = client.register_script(ENTER)
        self._client = client

    def turn(self, host: str, *, interval_seconds: float, slot_ms: int = 0) -> Turn:
        """May a request to `host` go now, at most one per `interval_seconds` across all workers?
        If not, it is given a slot of its own: ask again with `slot_ms` after `wait_seconds`."""
        go, wait_ms, slot = self._turn(keys=self._keys(host), args=[max(1, round(interval_seconds * 1000)), slot_ms])
        return Turn(bool(go), wait_ms / 1000, int(slot))

    def pause(self, host: str, *, seconds: float) -> None:
        """No request to `host` before `seconds` from now (a Retry-After, a backoff)."""
        self._pause(keys=self._keys(host), args=[max(1, round(seconds * 1000))])

    @staticmethod
    def _keys(host: str) -> list[str]:
        return [f"{KEY_PREFIX}{host}:next", f"{KEY_PREFIX}{host}:paused", f"{KEY_PREFIX}{host}:last"]

    def enter(self, host: str, *, holder: str, cap: int, hold_seconds: float) -> Turn:
        """Take one of `cap` places for requests in flight to `host`, for at most `hold_seconds`."""
        go, wait_ms = self._enter(keys=[f"{KEY_PREFIX}{host}:in-flight"],
                                  args=[cap, holder, max(1, round(hold_seconds * 1000))])
        return Turn(bool(go), wait_ms / 1000)

    def leave(self, host: str, *, holder: str) -> None:
        self._client.zrem(f"{KEY_PREFIX}{host}:in-flight", holder)
