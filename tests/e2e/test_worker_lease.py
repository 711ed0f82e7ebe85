"""A real worker keeps a long run's lease renewed while it executes, from the one renewal thread
of its pool process (scheduler.worker_leases), and gives it up with the outcome."""

import json
from datetime import timedelta

import pytest

from scheduler.celery import app
from scheduler.models import ScheduleRun
from scheduler.publish import runs_send_now
from tests.builders import interval_task
from tests.e2e.processes import worker_argv
from tests.e2e.waiting import wait_until
from wiring.celery import broker_connections_forget

pytestmark = pytest.mark.django_db(transaction=True)

# A lease of 3 s, renewed every second, around a run of 5 s: it lapses unless it is renewed.
LEASE = {"RUN_LEASE_SECONDS": "3"}
RUN_SECONDS = 5


def test_a_run_longer_than_its_lease_keeps_the_lease_until_it_ends(start_process, app_env, settings, tmp_path):
    settings.CELERY_BROKER_URL = app.conf.broker_url = app_env["REDIS_URL"]
    broker_connections_forget()
    task = interval_task("long run", timedelta(days=1), task="tests.e2e.tasks.note_start_then_sleep",
                         args=json.dumps([str(tmp_path / "notes.txt"), RUN_SECONDS]), enabled=False)
    worker = start_process("worker", worker_argv("--include", "tests.e2e.tasks"), **app_env, **LEASE)
    worker.wait_for_output("ready.", timeout=60)

    (dispatch,) = runs_send_now(tasks=[task], node="test", app=app)
    run = wait_until(lambda: ScheduleRun.objects.filter(id=dispatch.run_id, status="running").first(), timeout=60,
                     what="the run started")
    # Renewed: pushed past the lease its start took, while the run still runs.
    renewed = wait_until(
        lambda: ScheduleRun.objects.filter(id=run.id, status="running",
                                           lease_until__gt=run.started_at + timedelta(seconds=3.5)).first(),
        timeout=30, what=lambda: f"the lease renewed: {list(ScheduleRun.objects.values('status', 'lease_until'))}")
    assert renewed.worker == run.worker

    done = wait_until(lambda: ScheduleRun.objects.filter(id=run.id).exclude(status="running").first(), timeout=60,
                      what="the run finished")
    assert (done.status, done.lease_until, done.error) == ("succeeded", None, "")
    assert done.finished_at - done.started_at >= timedelta(seconds=RUN_SECONDS)
