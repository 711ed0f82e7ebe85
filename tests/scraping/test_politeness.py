"""Per-host limits in a real Redis, shared by every worker: a rate, pauses and an in-flight cap.

No bound here rests on how fast the test runs. What the scripts decide rests on Redis's clock, so
the tests read it too (TIME, and the host's `last` key, the moment of the last go) and bound each
answer between the Redis times read just before and just after the call. Where a case needs two
calls to come within an interval of each other, a machine stalled longer than that between them
is seen on Redis's clock, and the case is played again on a fresh host rather than failed.
"""

import threading
import time

import pytest

from scraping.politeness import KEY_PREFIX, HostLimits

ATTEMPTS = 3


class Stalled(Exception):
    """The machine stalled for longer than the case allows between two calls (Redis's clock says so)."""


def redis_ms(client) -> int:
    """Redis's TIME in whole milliseconds, as the politeness scripts read it."""
    seconds, microseconds = client.time()
    return seconds * 1000 + microseconds // 1000


def last_go_ms(client, host: str) -> int:
    """When Redis last let a request to `host` go (ms): the scripts' `last` key."""
    return int(client.get(f"{KEY_PREFIX}{host}:last"))


def played(case) -> None:
    """Play `case(host)` on a fresh host until it is not Stalled, a few times at most."""
    for attempt in range(ATTEMPTS):
        try:
            return case(f"shop-{attempt}.test")
        except Stalled as stalled:
            print(f"attempt {attempt + 1}: {stalled}")
    pytest.skip(f"the machine stalled past the case's interval {ATTEMPTS} times: not played")


@pytest.fixture
def limits(shared_redis):
    return HostLimits(shared_redis)


def test_a_host_gets_one_request_per_interval_and_the_next_caller_is_given_the_next_slot(limits, shared_redis):
    # A minute's interval: the three calls come within it on however busy a machine.
    assert limits.turn("shop.test", interval_seconds=60).go
    went = last_go_ms(shared_redis, "shop.test")
    before = redis_ms(shared_redis)
    second = limits.turn("shop.test", interval_seconds=60)
    after = redis_ms(shared_redis)
    assert not second.go and second.slot_ms == went + 60_000
    # Its wait is from its slot to Redis's time during the call.
    assert second.slot_ms - after <= second.wait_seconds * 1000 <= second.slot_ms - before
    third = limits.turn("shop.test", interval_seconds=60)
    assert not third.go and third.slot_ms - second.slot_ms == 60_000, "each waiter its own slot"
    assert limits.turn("other.test", interval_seconds=60).go, "each host has its own turn"


def test_a_waiter_back_for_its_slot_goes_then_and_not_before(limits, shared_redis):
    def case(host: str) -> None:
        assert limits.turn(host, interval_seconds=0.3).go
        went = last_go_ms(shared_redis, host)
        waiting = limits.turn(host, interval_seconds=0.3)
        early = limits.turn(host, interval_seconds=0.3, slot_ms=waiting.slot_ms)
        if redis_ms(shared_redis) >= went + 300:
            raise Stalled("the waiter came back after its slot")
        assert not waiting.go and not early.go and early.slot_ms == waiting.slot_ms, "a waiter early keeps its slot"
        time.sleep(early.wait_seconds + 0.01)
        assert limits.turn(host, interval_seconds=0.3, slot_ms=waiting.slot_ms).go
        assert last_go_ms(shared_redis, host) >= waiting.slot_ms

    played(case)


def test_waiters_coming_back_late_together_still_go_an_interval_apart(limits, shared_redis):
    interval_ms = 500

    def case(host: str) -> None:
        assert limits.turn(host, interval_seconds=interval_ms / 1000).go
        first, second = (limits.turn(host, interval_seconds=interval_ms / 1000) for _ in range(2))
        if redis_ms(shared_redis) >= last_go_ms(shared_redis, host) + interval_ms:
            raise Stalled("the two waiters asked an interval after the first go")
        assert not first.go and not second.go
        time.sleep(3 * interval_ms / 1000)  # both slots have passed: their workers were busy
        assert limits.turn(host, interval_seconds=interval_ms / 1000, slot_ms=first.slot_ms).go
        went = last_go_ms(shared_redis, host)
        before = redis_ms(shared_redis)
        late = limits.turn(host, interval_seconds=interval_ms / 1000, slot_ms=second.slot_ms)
        after = redis_ms(shared_redis)
        if after >= went + interval_ms:
            # Its call may have come an interval after the first went: then going is right.
            raise Stalled(f"the second waiter came back {after - went} ms after the first went")
        # Its slot has passed, but the first went less than an interval ago: it waits for the
        # rest of that interval, on Redis's clock, and keeps its slot.
        assert not late.go and late.slot_ms == second.slot_ms
        assert went + interval_ms - after <= late.wait_seconds * 1000 <= went + interval_ms - before
        time.sleep(late.wait_seconds + 0.01)
        assert limits.turn(host, interval_seconds=interval_ms / 1000, slot_ms=second.slot_ms).go
        assert last_go_ms(shared_redis, host) - went >= interval_ms

    played(case)


def test_callers_on_many_threads_coming_back_for_their_slots_are_never_within_an_interval(limits):
    granted = []  # (just before, just after) the call that said go
    reserved = []  # the slot each waiter was given

    def caller():
        for _ in range(2):
            before = time.monotonic()
            turn = limits.turn("busy.test", interval_seconds=0.25)
            if not turn.go:
                reserved.append(turn.slot_ms)
            while not turn.go:
                time.sleep(turn.wait_seconds)
                before = time.monotonic()
                turn = limits.turn("busy.test", interval_seconds=0.25, slot_ms=turn.slot_ms)
            granted.append((before, time.monotonic()))

    threads = [threading.Thread(target=caller) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 10
    # Each go happened inside its call, on Redis's clock, so whichever of two went first, the other's
    # call ended at least an interval after the first's began. A slow machine only widens that: the
    # bound cannot fail from noise, only from two requests let go within an interval (less 10 ms for
    # Redis's whole milliseconds).
    for i, (began, ended) in enumerate(granted):
        for other_began, other_ended in granted[i + 1:]:
            assert max(other_ended - began, ended - other_began) > 0.24
    # Every waiter was given a slot of its own, each at least an interval after the one before.
    reserved.sort()
    assert reserved and len(set(reserved)) == len(reserved)
    assert all(later - earlier >= 250 for earlier, later in zip(reserved, reserved[1:], strict=False))


def test_a_retry_after_pauses_the_host_and_a_shorter_pause_never_shortens_it(limits):
    waiting = limits.turn("slow.test", interval_seconds=1), limits.turn("slow.test", interval_seconds=1)
    limits.pause("slow.test", seconds=120)
    limits.pause("slow.test", seconds=5)
    turn = limits.turn("slow.test", interval_seconds=1)
    assert not turn.go and 110 < turn.wait_seconds <= 120
    # A slot given out before the pause does not outrank it.
    back = limits.turn("slow.test", interval_seconds=1, slot_ms=waiting[1].slot_ms)
    assert not back.go and 110 < back.wait_seconds <= 120 and back.slot_ms == 0


def test_at_most_the_cap_is_in_flight_and_a_place_frees_when_left_or_expired(limits, shared_redis):
    def case(host: str) -> None:
        assert limits.enter(host, holder="a", cap=2, hold_seconds=30).go
        before = redis_ms(shared_redis)
        assert limits.enter(host, holder="b", cap=2, hold_seconds=0.3).go
        full = limits.enter(host, holder="c", cap=2, hold_seconds=30)
        if redis_ms(shared_redis) >= before + 300:
            raise Stalled("b's hold of 0.3 s may have run out before c asked")
        assert not full.go and 0 < full.wait_seconds <= 0.3
        time.sleep(0.35)  # b's hold runs out: a worker killed mid-fetch frees its place
        assert limits.enter(host, holder="c", cap=2, hold_seconds=30).go
        limits.leave(host, holder="a")
        assert limits.enter(host, holder="d", cap=2, hold_seconds=30).go

    played(case)
