"""A schedule made through the ORM runs on a real worker via a real beat, and stops when disabled."""

import time

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from scheduler.models import BeatHeartbeat
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_schedule_created_through_the_orm_runs_and_stops_when_disabled(start_process, app_env):
    start_process("worker", worker_argv(), **app_env)
    start_process("beat", celery_argv("beat"), **app_env)
    every_two_seconds, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    schedule = PeriodicTask.objects.create(
        name="e2e heartbeat", task="scheduler.tasks.heartbeat", interval=every_two_seconds
    )

    result = wait_until(
        lambda: TaskResult.objects.filter(periodic_task_name="e2e heartbeat", status="SUCCESS").first(),
        timeout=60, what="a successful run recorded in the results",
    )
    assert result.task_name == "scheduler.tasks.heartbeat"
    assert result.worker.startswith("celery@")
    assert result.date_started is not None and result.date_done >= result.date_started
    assert not BeatHeartbeat.objects.get().is_stale()

    schedule.enabled = False
    schedule.save()
    # Beat notices the change within its 5 s loop; a run already sent may still finish.
    time.sleep(8)
    runs_after_disabling = TaskResult.objects.filter(periodic_task_name="e2e heartbeat").count()
    time.sleep(8)
    assert TaskResult.objects.filter(periodic_task_name="e2e heartbeat").count() == runs_after_disabling
