"""A schedule of a job task is checked when it is saved, and again by beat for a row written
past the form: a URL the gate refuses or a command outside JOB_COMMANDS never reaches a worker."""

import json
from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from scheduler.messages import message_problem
from tests.builders import interval_task
from tests.scheduler.test_admin import ADD_URL, form_errors, schedule_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("task, kwargs, named", [
    ("jobs.run_command", {"command": "shell", "arguments": []}, "&#x27;command&#x27; &#x27;shell&#x27; is not one"),
    ("jobs.run_command", {"command": "cleanup", "arguments": ["--bogus"]}, "unrecognized arguments: --bogus"),
    ("jobs.http_call", {"url": "http://169.254.169.254/latest/meta-data/"}, "refused by the outbound gate"),
    ("jobs.http_call", {"url": "https://example.com/", "secret_headers": {"Authorization": "SECRET_KEY"}},
     "starting with JOB_SECRET_"),
])
def test_the_form_refuses_a_job_it_could_never_run_naming_kwargs(staff_client, task, kwargs, named):
    response = staff_client.post(ADD_URL, schedule_form(task=task, kwargs=json.dumps(kwargs)))

    errors = form_errors(response)
    assert list(errors) == ["kwargs"], errors
    assert named in str(errors["kwargs"])
    assert not PeriodicTask.objects.filter(name="Nightly thing").exists()


@pytest.mark.parametrize("task, kwargs", [
    ("jobs.run_command", {"command": "cleanup", "arguments": ["sessions", "--dry-run"]}),
    ("jobs.http_call", {"url": "https://example.com/hooks/nightly", "method": "POST",
                        "secret_headers": {"Authorization": "JOB_SECRET_OPS_TOKEN"}, "expected_status": [200]}),
])
def test_the_form_saves_a_job_it_can_run(staff_client, task, kwargs):
    response = staff_client.post(ADD_URL, schedule_form(task=task, kwargs=json.dumps(kwargs)))
    assert response.status_code == 302, form_errors(response)
    assert PeriodicTask.objects.get(name="Nightly thing").task == task


def test_beat_refuses_a_command_outside_the_list_written_past_the_form():
    task = interval_task("planted", timedelta(minutes=5), task="jobs.run_command",
                         kwargs=json.dumps({"command": "flush", "arguments": ["--noinput"]}))
    assert "'command' 'flush' is not one a schedule may run" in message_problem(task)
