"""With Redis unreachable, worker and beat say which URL (password masked) and keep retrying."""

from datetime import timedelta

import pytest

from tests.builders import interval_task
from tests.e2e.processes import celery_argv, worker_argv
from wiring.embedded_redis import free_port

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
