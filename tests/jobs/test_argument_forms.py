"""The jobs' short forms on a schedule's page: a URL and a method, a command and its arguments,
written into the schedule's kwargs at save, filled from them on its change page, and refused with
the problem on the field it concerns."""

import json
import re
from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from tests.builders import interval_task
from tests.scheduler.test_admin import ADD_URL, form_errors, schedule_form
from tests.scheduler.test_admin_schedules import change_url, schedule_change_form

pytestmark = pytest.mark.django_db

HTTP = "jobs_http_call__"
COMMAND = "jobs_run_command__"


def http_fields(**fields) -> dict:
    return {f"{HTTP}{name}": value for name, value in fields.items()}


def command_fields(**fields) -> dict:
    return {f"{COMMAND}{name}": value for name, value in fields.items()}


def saved_kwargs(name: str = "Nightly thing") -> dict:
    return json.loads(PeriodicTask.objects.get(name=name).kwargs)


def test_the_add_page_shows_each_jobs_short_form_saying_which_task_it_is_for(staff_client, settings):
    settings.JOB_COMMANDS = ("cleanup", "scrape")

    page = staff_client.get(ADD_URL).content.decode()

    assert "HTTP call" in page and "For the task <strong>jobs.http_call</strong>" in page
    assert "Management command" in page and "For the task <strong>jobs.run_command</strong>" in page
    for name in ("url", "method", "expected_status", "timeout", "allowed_port", "body", "headers", "secret_headers"):
        assert f'name="{HTTP}{name}"' in page, name
    assert '<option value="POST">POST</option>' in page
    assert '<option value="cleanup">cleanup</option>' in page and '<option value="scrape">scrape</option>' in page
    assert '<option value="send_report">' not in page
    assert "One argument a line" in page
    assert '<script src="/static/scheduler/task_arguments.js"></script>' in page
    # Each field labelled by its own name, not by its prefixed one ("Jobs http call method").
    labels = re.findall(r'<label[^>]*for="id_jobs_[^"]*">([^<]*)</label>', page)
    assert {"Method:", "Body:", "Headers:", "Command:", "Arguments:"} <= set(labels), labels
    assert not [label for label in labels if label.startswith("Jobs ")], labels


def test_the_http_call_fields_write_the_schedules_kwargs(staff_client):
    form = schedule_form(regtask="jobs.http_call", **http_fields(
        url="https://ops.example.com/hooks/nightly", method="POST", expected_status="200, 204", timeout="10",
        allowed_port="", body='{"run": "nightly"}', headers="Content-Type: application/json\r\nX-Team: ops",
        secret_headers="Authorization: JOB_SECRET_OPS_TOKEN"))

    response = staff_client.post(ADD_URL, form)

    assert response.status_code == 302, form_errors(response)
    assert saved_kwargs() == {
        "url": "https://ops.example.com/hooks/nightly", "method": "POST", "expected_status": [200, 204],
        "timeout": 10, "body": '{"run": "nightly"}',
        "headers": {"Content-Type": "application/json", "X-Team": "ops"},
        "secret_headers": {"Authorization": "JOB_SECRET_OPS_TOKEN"},
    }


def test_the_command_fields_write_the_schedules_kwargs(staff_client):
    form = schedule_form(regtask="jobs.run_command",
                         **command_fields(command="cleanup", arguments="sessions\r\n--dry-run\r\n"))

    response = staff_client.post(ADD_URL, form)

    assert response.status_code == 302, form_errors(response)
    assert saved_kwargs() == {"command": "cleanup", "arguments": ["sessions", "--dry-run"]}


def test_the_change_page_fills_the_short_form_from_the_saved_kwargs(staff_client):
    task = interval_task("Ping ops", timedelta(minutes=5), task="jobs.http_call", kwargs=json.dumps({
        "url": "https://ops.example.com/ping", "method": "PUT", "expected_status": [200, 204],
        "headers": {"X-Team": "ops"}, "secret_headers": {"Authorization": "JOB_SECRET_OPS_TOKEN"}}))

    form = staff_client.get(change_url(task)).context["adminform"].form
    page = staff_client.get(change_url(task)).content.decode()

    assert form[f"{HTTP}url"].value() == "https://ops.example.com/ping"
    assert '<option value="PUT" selected>PUT</option>' in page
    assert 'value="200, 204"' in page
    assert ">\nX-Team: ops</textarea>" in page
    assert ">\nAuthorization: JOB_SECRET_OPS_TOKEN</textarea>" in page


def test_the_short_form_edited_on_the_change_page_rewrites_the_kwargs(staff_client):
    saved = json.dumps({"command": "cleanup", "arguments": ["sessions"]})
    task = interval_task("Clean sessions", timedelta(minutes=5), task="jobs.run_command", kwargs=saved)
    # The raw kwargs are posted as the page showed them; only the arguments box was edited.
    form = {**schedule_change_form(task), "kwargs": saved,
            **command_fields(command="cleanup", arguments="sessions\n--dry-run")}

    response = staff_client.post(change_url(task), form)

    assert response.status_code == 302, form_errors(response)
    assert saved_kwargs("Clean sessions") == {"command": "cleanup", "arguments": ["sessions", "--dry-run"]}


def test_raw_kwargs_and_the_short_form_both_given_must_agree_else_the_field_is_named(staff_client):
    def posted(raw: dict):
        return staff_client.post(ADD_URL, schedule_form(regtask="jobs.http_call", kwargs=json.dumps(raw),
                                                        **http_fields(url="https://a.example.com/", method="GET")))

    errors = form_errors(posted({"url": "https://b.example.com/"}))
    assert list(errors) == ["kwargs"], errors
    assert "Keyword Arguments and the fields of HTTP call disagree on URL: keep one of them" in errors["kwargs"][0]
    assert not PeriodicTask.objects.filter(name="Nightly thing").exists()

    # The same call said both ways (GET is the method when none is given) is saved as written.
    response = posted({"url": "https://a.example.com/", "method": "GET"})
    assert response.status_code == 302, form_errors(response)
    assert saved_kwargs() == {"url": "https://a.example.com/", "method": "GET"}


@pytest.mark.parametrize("task, fields, field, named", [
    ("jobs.http_call", http_fields(url="http://169.254.169.254/latest/meta-data/"), f"{HTTP}url",
     "is refused by the outbound gate"),
    ("jobs.http_call", http_fields(url="https://example.com/", secret_headers="Authorization: SECRET_KEY"),
     f"{HTTP}secret_headers", "starting with JOB_SECRET_"),
    ("jobs.http_call", http_fields(url="https://example.com/", timeout="900"), f"{HTTP}timeout",
     "&#x27;timeout&#x27; must be a number of seconds from 1 to 300"),
    ("jobs.http_call", http_fields(method="POST"), f"{HTTP}url", "&#x27;url&#x27; is required"),
    ("jobs.run_command", command_fields(command="cleanup", arguments="--bogus"), f"{COMMAND}arguments",
     "unrecognized arguments: --bogus"),
])
def test_a_problem_of_the_job_is_shown_on_the_field_of_the_key_it_names(staff_client, task, fields, field, named):
    page = staff_client.post(ADD_URL, schedule_form(regtask=task, **fields))

    errors = form_errors(page)
    assert list(errors) == [field], errors
    assert named in page.content.decode()
    assert not PeriodicTask.objects.filter(name="Nightly thing").exists()


@pytest.mark.parametrize("fields, field, said", [
    (http_fields(url="https://example.com/", headers="X-Team ops"), f"{HTTP}headers",
     "Line 1 ('X-Team ops') is not Name: value."),
    (http_fields(url="https://example.com/", expected_status="200, 2o4"), f"{HTTP}expected_status",
     "'2o4' is not a status code: write codes like 200, 204."),
])
def test_a_box_that_does_not_parse_is_refused_saying_how_to_write_it(staff_client, fields, field, said):
    errors = form_errors(staff_client.post(ADD_URL, schedule_form(regtask="jobs.http_call", **fields)))

    assert errors == {field: [said]}


def test_fields_filled_for_another_task_are_refused_naming_their_task(staff_client):
    form = schedule_form(regtask="jobs.run_command", **command_fields(command="cleanup"),
                         **http_fields(url="https://example.com/"))

    errors = form_errors(staff_client.post(ADD_URL, form))

    assert errors == {f"{HTTP}url": ["These fields are for the task jobs.http_call, and the task chosen is "
                                     "jobs.run_command: empty them, or choose jobs.http_call."]}
