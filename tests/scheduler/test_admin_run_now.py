""""Run now" on the schedule list: a manual run in the ledger, published to a real Redis."""

import json
import re
import socket
from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleRun
from tests.builders import HEARTBEAT, interval_task

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/django_celery_beat/periodictask/"


def schedule(name: str, task: str = HEARTBEAT) -> PeriodicTask:
    return interval_task(name, timedelta(days=1), task=task, kwargs='{"source": "admin"}')


def run_now(client, *tasks: PeriodicTask):
    return client.post(LIST_URL, {"action": "run_now", "_selected_action": [task.pk for task in tasks]}, follow=True)


def page_messages(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def test_run_now_records_a_manual_run_and_sends_it_to_redis(staff_client, queue):
    task = schedule("Morning report")

    response = run_now(staff_client, task)

    run = ScheduleRun.objects.get(schedule=task)
    assert (run.kind, run.status) == ("manual", "sent")
    assert run.claimed_by.startswith("admin:staff:")  # shared.claims.holder_name: place:pid:token
    assert run.sent_at is not None
    message = json.loads(queue.lindex("default", 0))
    assert message["headers"]["id"] == run.task_id
    assert message["headers"]["task"] == "scheduler.tasks.heartbeat"
    assert message["headers"]["schedule_run_id"] == run.pk
    assert message["headers"]["schedule_name"] == "Morning report"
    [(level, said)] = page_messages(response)
    assert level == "success"
    assert "Queued for the workers now: Morning report." in said
    assert 'href="/admin/scheduler/schedulerun/?kind=manual"' in said


def test_run_now_sends_each_selected_schedule_once(staff_client, queue):
    first, second = schedule("Morning report"), schedule("Evening report")

    run_now(staff_client, first, second)

    assert ScheduleRun.objects.filter(kind="manual", status="sent").count() == 2
    sent = {json.loads(raw)["headers"]["id"] for raw in queue.lrange("default", 0, -1)}
    assert sent == set(ScheduleRun.objects.values_list("task_id", flat=True))


@pytest.fixture
def refused_port():
    """A port that refuses connections: bound and held by this test, never listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def test_run_now_with_the_broker_down_keeps_the_run_claimed_for_beat_and_says_so(staff_client, broker_at,
                                                                                  refused_port):
    broker_at(f"redis://127.0.0.1:{refused_port}/0")
    task = schedule("Morning report")

    response = run_now(staff_client, task)

    assert ScheduleRun.objects.get(schedule=task).status == "claimed"
    [(level, said)] = page_messages(response)
    assert level == "warning"
    assert re.search(r"Could not reach the broker at redis://[^ ]*127\.0\.0\.1:\d+/0 \(Error 111 connecting", said)
    assert "The runs of Morning report are recorded as claimed" in said
    assert "beat sends them once it reaches Redis again (it takes over claims older than 20 s)" in said


def test_run_now_refuses_a_schedule_whose_task_no_worker_knows(staff_client, queue):
    known, unknown = schedule("Morning report"), schedule("Typo", task="scheduler.tasks.no_such_task")

    response = run_now(staff_client, known, unknown)

    assert page_messages(response) == [("error", "Nothing was run: no worker knows the task of Typo.")]
    assert not ScheduleRun.objects.exists()
    assert queue.llen("default") == 0
