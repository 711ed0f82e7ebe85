"""A schedule made through the ORM runs on a real worker via a real beat, and stops when disabled."""

from datetime import timedelta

import pytest
from django_celery_results.models import TaskResult

from scheduler.models import BeatHeartbeat, ScheduleRun
from tests.builders import interval_task
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.waiting import beat_sees_paused, runs_settled, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_schedule_created_through_the_orm_runs_and_stops_when_disabled(start_process, app_env):
    start_process("worker", worker_argv(), **app_env)
    start_process("beat", celery_argv("beat"), **app_env)
    schedule = interval_task("e2e heartbeat", timedelta(seconds=2))

    result = wait_until(
        lambda: TaskResult.objects.filter(periodic_task_name="e2e heartbeat", status="SUCCESS").first(),
        timeout=60, what="a successful run recorded in the results",
    )
    assert result.task_name == "scheduler.tasks.heartbeat"
    assert result.worker.startswith("celery@")
    # When it started is the run ledger's (Celery's STARTED result is off: wiring.settings).
    run = ScheduleRun.objects.get(task_id=result.task_id)
    assert run.status == ScheduleRun.Status.SUCCEEDED and run.finished_at >= run.started_at
    assert not BeatHeartbeat.objects.get().is_stale()

    schedule.enabled = False
    schedule.save()
    runs = ScheduleRun.objects.filter(schedule=schedule)
    results = TaskResult.objects.filter(periodic_task_name="e2e heartbeat")
    wait_until(lambda: beat_sees_paused(schedule), timeout=30, what="beat to see the schedule paused")
    # A run already sent may still finish, and its result is recorded.
    wait_until(lambda: not runs.filter(status__in=["sent", "running"]).exists()
               and results.count() == runs.filter(status__in=["succeeded", "failed"]).count(),
               timeout=60, what="the runs sent before the pause to finish with their results")
    runs_after_disabling = TaskResult.objects.filter(periodic_task_name="e2e heartbeat").count()
    # The runs beat had claimed ahead come due over the next seconds, and are withdrawn, not sent.
    wait_until(lambda: runs_settled(runs), timeout=60, what="the runs claimed ahead to be withdrawn")
    assert TaskResult.objects.filter(periodic_task_name="e2e heartbeat").count() == runs_after_disabling
