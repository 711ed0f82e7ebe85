"""A worker keeps its database session from task to task (CONN_MAX_AGE), as a web process does
from request to request; Celery's fixup opened a new one for every task (issue 15.5)."""

from datetime import timedelta

import pytest
from django.db import connection

from scheduler.celery import app
from scheduler.models import ScheduleRun
from scheduler.publish import runs_send_now
from tests.builders import interval_task
from tests.e2e.processes import worker_argv
from tests.e2e.waiting import wait_until
from wiring.celery import broker_connections_forget

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # SQLite's connections are opened per task on purpose (CONN_MAX_AGE 0: opening a file is
    # cheap, and a connection left open holds its snapshot of the WAL).
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL sessions are what a worker keeps"),
]

RUNS = 5


def test_one_worker_process_runs_task_after_task_on_one_database_session(start_process, app_env, settings):
    settings.CELERY_BROKER_URL = app.conf.broker_url = app_env["REDIS_URL"]
    broker_connections_forget()
    task = interval_task("which session", timedelta(days=1), task="tests.e2e.tasks.database_session", enabled=False)
    start_process("worker", worker_argv("--include", "tests.e2e.tasks", "--pool", "solo"), **app_env)

    for _ in range(RUNS):
        runs_send_now(tasks=[task], node="test", app=app)
        wait_until(lambda: not ScheduleRun.objects.exclude(status__in=ScheduleRun.FINISHED).exists(), timeout=60,
                   what=lambda: f"the run finished: {list(ScheduleRun.objects.values_list('status', 'error'))}")

    runs = list(ScheduleRun.objects.order_by("id"))
    assert [run.status for run in runs] == [ScheduleRun.Status.SUCCEEDED] * RUNS, [run.error for run in runs]
    assert len({run.output for run in runs}) == 1, [run.output for run in runs]
