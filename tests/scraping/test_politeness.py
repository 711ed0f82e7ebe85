"""Per-host limits in a real Redis, shared by every worker: a rate, pauses and an in-flight cap."""

import threading
import time

import pytest

from scraping.politeness import HostLimits


@pytest.fixture
def limits(shared_redis):
    return HostLimits(shared_redis)


def test_a_host_gets_one_request_per_interval_and_the_next_caller_is_told_how_long_to_wait(limits):
    assert limits.turn("shop.test", interval_seconds=2).go
    second = limits.turn("shop.test", interval_seconds=2)
    assert not second.go and 1.5 < second.wait_seconds <= 2.0
    assert limits.turn("other.test", interval_seconds=2).go, "each host has its own turn"


def test_callers_on_many_threads_never_get_two_turns_within_an_interval(limits):
    granted = []

    def caller():
        deadline = time.monotonic() + 2.2
        while time.monotonic() < deadline:
            if limits.turn("busy.test", interval_seconds=0.5).go:
                granted.append(time.monotonic())
            time.sleep(0.005)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gaps = [later - earlier for earlier, later in zip(granted, granted[1:], strict=False)]
    assert 4 <= len(granted) <= 5
    # Redis's clock spaces the grants 0.5 s apart; this process sees them arrive a little late.
    assert min(gaps) > 0.35


def test_a_retry_after_pauses_the_host_and_a_shorter_pause_never_shortens_it(limits):
    limits.pause("slow.test", seconds=120)
    limits.pause("slow.test", seconds=5)
    turn = limits.turn("slow.test", interval_seconds=1)
    assert not turn.go and 110 < turn.wait_seconds <= 120


def test_at_most_the_cap_is_in_flight_and_a_place_frees_when_left_or_expired(limits):
    assert limits.enter("shop.test", holder="a", cap=2, hold_seconds=30).go
    assert limits.enter("shop.test", holder="b", cap=2, hold_seconds=0.3).go
    full = limits.enter("shop.test", holder="c", cap=2, hold_seconds=30)
    assert not full.go and 0 < full.wait_seconds <= 0.3
    time.sleep(0.35)  # b's hold runs out: a worker killed mid-fetch frees its place
    assert limits.enter("shop.test", holder="c", cap=2, hold_seconds=30).go
    limits.leave("shop.test", holder="a")
    assert limits.enter("shop.test", holder="d", cap=2, hold_seconds=30).go
