import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler.models import WorkerHeartbeat
from scheduler.services import heartbeat_record
from scheduler.tasks import heartbeat

pytestmark = pytest.mark.django_db


def test_it_records_each_workers_beats():
    heartbeat_record(worker="celery@one")
    heartbeat_record(worker="celery@one")
    heartbeat_record(worker="celery@two")
    assert dict(WorkerHeartbeat.objects.values_list("worker", "beats")) == {"celery@one": 2, "celery@two": 1}


def test_the_task_records_the_worker_that_ran_it():
    # Run in-process, the task's hostname is this machine's name, as a worker's would be.
    result = heartbeat.apply().get()
    assert result["worker"] == socket.gethostname() and result["beats"] == 1
    assert WorkerHeartbeat.objects.get().worker == socket.gethostname()


def test_the_admin_marks_a_worker_stale_after_three_silent_minutes(staff_client):
    heartbeat_record(worker="celery@fresh")
    old = heartbeat_record(worker="celery@gone")
    WorkerHeartbeat.objects.filter(pk=old.pk).update(last_beat_at=timezone.now() - timedelta(minutes=4))

    page = staff_client.get("/admin/scheduler/workerheartbeat/").content.decode()
    assert "celery@fresh" in page and "alive" in page
    assert "celery@gone" in page and "stale: last beat 24" in page
