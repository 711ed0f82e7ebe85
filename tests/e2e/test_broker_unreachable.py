"""With Redis unreachable, worker and beat say which URL (password masked) and keep retrying;
a worker that loses Redis in the middle of a task carries on once it is back."""

from datetime import timedelta

import pytest

from tests.builders import interval_task
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.tasks import note_start_then_sleep_sent
from tests.e2e.waiting import wait_until
from wiring.embedded_redis import EmbeddedRedis, free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_and_beat_name_the_unreachable_broker_and_keep_retrying(start_process, app_env):
    port = free_port()
    env = {**app_env, "REDIS_URL": f"redis://:s3cret-pw@127.0.0.1:{port}/0"}
    masked = f"redis://:**@127.0.0.1:{port}/0"
    # Something due, so that beat has to reach the broker.
    interval_task("due now", timedelta(seconds=1))

    worker = start_process("worker", worker_argv(), **env)
    beat = start_process("beat", celery_argv("beat"), **env)

    # Each says so again on its next try: it kept retrying instead of giving up. The worker
    # tries every second, never backing off (Celery's own waited 2, 4, 6 s ... up to 30 s), so
    # it is back within a second of Redis.
    worker.wait_for_output(f"Cannot connect to {masked}", timeout=60, times=4)
    tries = [line for line in worker.output().splitlines() if "Trying again" in line]
    assert len(tries) >= 4 and all("Trying again in 1.00 second" in line for line in tries), tries
    beat.wait_for_output(f"beat: cannot reach the broker at {masked}", timeout=60, times=2)
    assert worker.is_running() and beat.is_running()
    assert "s3cret-pw" not in worker.output() + beat.output()


def test_a_worker_that_loses_redis_during_a_task_carries_on_once_redis_is_back(start_process, app_env, tmp_path):
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    env = {**app_env, "REDIS_URL": redis.url}
    # As the Procfile runs it (gossip on), with two processes: while one runs the task, whose
    # message stays unacknowledged until it ends (acks_late), the worker waits on Redis for a
    # second. On Celery 5.7 as it comes, losing Redis then stopped the worker ("Unrecoverable
    # error") and its gossip logged an error with a traceback.
    worker = start_process("worker", celery_argv("worker", "--concurrency", "2", "--without-mingle",
                                                 "--include", "tests.e2e.tasks"), **env)
    try:
        worker.wait_for_output("ready.", timeout=60)
        first, second = tmp_path / "first.txt", tmp_path / "second.txt"
        note_start_then_sleep_sent(redis.url, first, seconds=3)
        wait_until(lambda: first.exists(), timeout=30, what="the first task to start")

        redis.stop()
        worker.wait_for_output("Connection to broker lost", timeout=30)
        worker.wait_for_output("Cannot connect to", timeout=30, times=2)
        assert worker.is_running(), worker.output()[-3000:]

        redis.start()
        worker.wait_for_output("Connected to", timeout=30, times=2)
        note_start_then_sleep_sent(redis.url, second, seconds=0)
        wait_until(lambda: second.exists() and "finished" in second.read_text(), timeout=30,
                   what="a task sent once Redis was back to run")
    finally:
        redis.stop()
    output = worker.output()
    assert "Unrecoverable error" not in output and "Error on restarting" not in output, output[-3000:]
    assert "Connection to broker lost" in output  # Celery's own warning, one line...
    assert "In Celery 5.1 we introduced" not in output  # ...without seven more of a choice already made

