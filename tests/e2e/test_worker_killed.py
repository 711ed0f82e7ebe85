"""A worker killed with SIGKILL in the middle of a task: the task is delivered again."""

import signal

import pytest
from django_celery_results.models import TaskResult

from tests.e2e.processes import worker_argv
from tests.e2e.tasks import note_start_then_sleep_sent
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Short limits so redelivery (after the visibility timeout) happens within the test, yet long
# enough for a busy machine: the first delivery sleeps FIRST_RUN_SECONDS, the test's window to
# kill its worker, below the soft limit (a first run cut short by it would fail, not be delivered
# again); the delivery again does not sleep (tests.e2e.tasks.note_start_then_sleep), so it has
# the whole limit.
FAST_REDELIVERY = {"TASK_TIME_LIMIT": "10", "TASK_SOFT_TIME_LIMIT": "8", "BROKER_VISIBILITY_TIMEOUT": "12"}
FIRST_RUN_SECONDS = 7


def wait_for_lines(path, expected: list[str], timeout: float) -> None:
    def lines() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    wait_until(lambda: lines() == expected, timeout=timeout,
               what=lambda: f"notes {expected}, found {lines()}")


def test_a_task_whose_worker_was_killed_is_delivered_again(start_process, app_env, redis_url, tmp_path):
    env = {**app_env, **FAST_REDELIVERY}
    first = start_process("worker-1", worker_argv("--include", "tests.e2e.tasks"), **env)
    first.wait_for_output("ready.", timeout=60)
    notes = tmp_path / "notes.txt"
    sent = note_start_then_sleep_sent(redis_url, notes, FIRST_RUN_SECONDS)

    wait_for_lines(notes, ["started"], timeout=30)
    first.signal_group(signal.SIGKILL)
    first.process.wait(timeout=10)

    start_process("worker-2", worker_argv("--include", "tests.e2e.tasks"), **env)
    wait_for_lines(notes, ["started", "started", "finished"], timeout=60)
    # Celery stores the result after the task returned (and no STARTED row is written before).
    result = wait_until(lambda: TaskResult.objects.filter(task_id=sent.id, status="SUCCESS").first(), timeout=30,
                        what=lambda: f"the task's result ({list(TaskResult.objects.values_list('status', flat=True))})")
    assert result.status == "SUCCESS" and result.result == '"finished"'
