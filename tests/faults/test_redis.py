"""(b, c) Redis killed with SIGKILL while runs are queued and executing, and started again at
the same address: with its data (the append-only file) and without it (a new, empty Redis)."""

import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 6
# Workers reconnect within one retry back-off; beat within its next ticks.
AFTER_RESTART_SECONDS = 10


def redis_data_forget(redis) -> None:
    """Everything the killed Redis kept on disk, gone: it comes back empty (configuration kept)."""
    for path in redis.directory.iterdir():
        if path.name != "redis.conf":
            if path.is_dir():
                for part in path.iterdir():
                    part.unlink()
                path.rmdir()
            else:
                path.unlink()


def redis_outage(campaign, redis, *, keep_data: bool) -> None:
    # Each run takes 1.5 s, three schedules every 2 s on two processes: some runs are always
    # executing and a few wait in the queue.
    campaign.schedules(3, every=2, seconds=1.5)
    campaign.worker("worker")
    campaign.beat("beat")
    campaign.wait_succeeded(6)
    campaign.wait_executing()

    redis.process.kill()
    redis.process.wait(timeout=10)
    time.sleep(OUTAGE_SECONDS)
    if not keep_data:
        redis_data_forget(redis)
    redis.start()
    time.sleep(AFTER_RESTART_SECONDS)


def test_redis_killed_and_restarted_with_its_data(campaign, fault_redis):
    redis_outage(campaign, fault_redis, keep_data=True)
    result = campaign.finish("b. Redis SIGKILLed, restarted with its AOF", settle_timeout=60)
    assert result.holds(), result.report()


def test_redis_killed_and_restarted_without_its_data(campaign, fault_redis):
    redis_outage(campaign, fault_redis, keep_data=False)
    # Runs whose messages vanished are found once they wait past their start grace (at least
    # 30 s) in two readings of the broker 15 s apart, checked every 20 s.
    result = campaign.finish("c. Redis SIGKILLed, restarted empty", settle_timeout=90)
    assert result.holds(), result.report()
