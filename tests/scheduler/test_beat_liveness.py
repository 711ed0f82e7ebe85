import os
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler.beat import DatabaseScheduler
from scheduler.celery import app
from scheduler.models import BeatHeartbeat
from scheduler.services import beat_heartbeat_record

pytestmark = pytest.mark.django_db


def admin_index(client) -> str:
    return client.get("/admin/").content.decode()


def test_the_admin_warns_when_beat_never_ran(staff_client):
    assert "Beat has never run against this database" in admin_index(staff_client)


def test_the_admin_says_beat_is_running_when_it_looped_recently(staff_client):
    beat_heartbeat_record(node="ops-1:4242", started_at=timezone.now())
    page = admin_index(staff_client)
    assert "Beat is running: last loop 0 s ago on ops-1:4242." in page


def test_the_admin_warns_when_beat_stopped(staff_client):
    beat_heartbeat_record(node="ops-1:4242", started_at=timezone.now())
    BeatHeartbeat.objects.update(last_beat_at=timezone.now() - timedelta(minutes=5, seconds=10))
    page = admin_index(staff_client)
    assert "Beat has not run for 5\xa0minutes" in page and "scheduled jobs are not being" in page


@pytest.mark.django_db(transaction=True)  # django-celery-beat's scheduler closes connections
def test_the_scheduler_records_its_loops_at_most_every_15_seconds():
    scheduler = DatabaseScheduler(app=app)
    scheduler.record_liveness()
    first = BeatHeartbeat.objects.get()
    assert first.node.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    scheduler.record_liveness()
    assert BeatHeartbeat.objects.get().last_beat_at == first.last_beat_at
