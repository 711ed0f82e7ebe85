"""A schedule written past the admin (the ORM) names a task no worker knows: the worker that
receives the run drops it unstarted, and records the run failed with the reason, instead of the
ledger keeping it sent (issue 13 item 6)."""

from datetime import timedelta

import pytest

from scheduler.celery import app
from scheduler.models import ScheduleRun
from scheduler.publish import runs_send_now
from tests.builders import interval_task
from tests.e2e.processes import worker_argv
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_of_a_task_no_worker_knows_is_recorded_failed_with_the_reason(start_process, app_env,
                                                                            app_publishing_to_test_redis):
    worker = start_process("worker", worker_argv(), **app_env)
    worker.wait_for_output("ready.", timeout=60)
    typo = interval_task("Typo in the task", timedelta(hours=1), task="scheduler.tasks.heartbaet")
    [dispatch] = runs_send_now(tasks=[typo], node="test", app=app)

    run = wait_until(lambda: ScheduleRun.objects.filter(id=dispatch.run_id, status="failed").first(), timeout=60,
                     what=lambda: f"the run failed ({ScheduleRun.objects.get(id=dispatch.run_id).status})")
    assert "No task named 'scheduler.tasks.heartbaet' is registered" in run.error
    assert run.started_at is None and run.finished_at is not None
    assert "Received unregistered task" in worker.output()
