"""Per-host limits in a real Redis, shared by every worker: a rate, pauses and an in-flight cap."""

import threading
import time

import pytest

from scraping.politeness import HostLimits


@pytest.fixture
def limits(shared_redis):
    return HostLimits(shared_redis)


def test_a_host_gets_one_request_per_interval_and_the_next_caller_is_given_the_next_slot(limits):
    assert limits.turn("shop.test", interval_seconds=2).go
    second = limits.turn("shop.test", interval_seconds=2)
    assert not second.go and 1.5 < second.wait_seconds <= 2.0 and second.slot_ms
    third = limits.turn("shop.test", interval_seconds=2)
    assert 3.5 < third.wait_seconds <= 4.0 and third.slot_ms - second.slot_ms == 2000, "each waiter its own slot"
    assert limits.turn("other.test", interval_seconds=2).go, "each host has its own turn"


def test_a_waiter_back_for_its_slot_goes_then_and_not_before(limits):
    limits.turn("shop.test", interval_seconds=0.3)
    waiting = limits.turn("shop.test", interval_seconds=0.3)
    early = limits.turn("shop.test", interval_seconds=0.3, slot_ms=waiting.slot_ms)
    assert not early.go and early.slot_ms == waiting.slot_ms, "a waiter early keeps its slot"
    time.sleep(early.wait_seconds + 0.01)
    assert limits.turn("shop.test", interval_seconds=0.3, slot_ms=waiting.slot_ms).go


def test_waiters_coming_back_late_together_still_go_an_interval_apart(limits):
    assert limits.turn("shop.test", interval_seconds=0.2).go
    first, second = (limits.turn("shop.test", interval_seconds=0.2) for _ in range(2))
    time.sleep(0.6)  # both slots have passed: their workers were busy
    assert limits.turn("shop.test", interval_seconds=0.2, slot_ms=first.slot_ms).go
    late = limits.turn("shop.test", interval_seconds=0.2, slot_ms=second.slot_ms)
    assert not late.go and 0.15 < late.wait_seconds <= 0.2 and late.slot_ms == second.slot_ms


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


def test_at_most_the_cap_is_in_flight_and_a_place_frees_when_left_or_expired(limits):
    assert limits.enter("shop.test", holder="a", cap=2, hold_seconds=30).go
    assert limits.enter("shop.test", holder="b", cap=2, hold_seconds=0.3).go
    full = limits.enter("shop.test", holder="c", cap=2, hold_seconds=30)
    assert not full.go and 0 < full.wait_seconds <= 0.3
    time.sleep(0.35)  # b's hold runs out: a worker killed mid-fetch frees its place
    assert limits.enter("shop.test", holder="c", cap=2, hold_seconds=30).go
    limits.leave("shop.test", holder="a")
    assert limits.enter("shop.test", holder="d", cap=2, hold_seconds=30).go
