from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from tests.builders import interval_every

pytestmark = pytest.mark.django_db


def schedule_form(**fields) -> dict:
    interval = interval_every(timedelta(minutes=5))
    return {
        "name": "Nightly thing", "regtask": "", "task": "", "enabled": "on", "interval": interval.pk,
        "args": "[]", "kwargs": "{}", "priority": "", "queue": "", "exchange": "", "routing_key": "",
        "headers": "{}", "expire_seconds": "", "description": "",
        # The policy inline, left at its defaults.
        "scheduler_policy-TOTAL_FORMS": "1", "scheduler_policy-INITIAL_FORMS": "0",
        # The alerts inline (monitoring), left empty.
        "alert_settings-TOTAL_FORMS": "0", "alert_settings-INITIAL_FORMS": "0",
        "scheduler_policy-MIN_NUM_FORMS": "0", "scheduler_policy-MAX_NUM_FORMS": "1",
        "scheduler_policy-0-missed_runs": "once", "scheduler_policy-0-catch_up_limit": "3",
        "scheduler_policy-0-starting_deadline_seconds": "60", "scheduler_policy-0-overlap": "allow",
        **fields,
    }


def test_admin_pages_need_a_staff_login(client):
    response = client.get("/admin/django_celery_beat/periodictask/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_schedule_form_refuses_a_task_that_does_not_exist(staff_client):
    response = staff_client.post(
        "/admin/django_celery_beat/periodictask/add/", schedule_form(task="scheduler.tasks.no_such_task")
    )
    assert response.status_code == 200
    assert "There is no task named &#x27;scheduler.tasks.no_such_task&#x27;" in response.content.decode()
    assert not PeriodicTask.objects.filter(name="Nightly thing").exists()


def test_the_schedule_form_accepts_a_registered_task(staff_client):
    response = staff_client.post(
        "/admin/django_celery_beat/periodictask/add/", schedule_form(task="scheduler.tasks.heartbeat")
    )
    assert response.status_code == 302
    assert PeriodicTask.objects.get(name="Nightly thing").task == "scheduler.tasks.heartbeat"
