import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

pytestmark = pytest.mark.django_db


def schedule_form(**fields) -> dict:
    interval, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    return {
        "name": "Nightly thing", "regtask": "", "task": "", "enabled": "on", "interval": interval.pk,
        "args": "[]", "kwargs": "{}", "priority": "", "queue": "", "exchange": "", "routing_key": "",
        "headers": "{}", "expire_seconds": "", "description": "", **fields,
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
