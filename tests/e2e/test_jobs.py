"""Cron-like jobs with real beat and worker processes (issue 16): a team's own task from an app
given in EXTRA_APPS, an HTTP call to a loopback server and an allow-listed management command,
each scheduled like the product's jobs and recorded in the run ledger with its output."""

import json
from datetime import timedelta

import pytest

from scheduler.models import ScheduleRun
from tests.builders import interval_task
from tests.conftest import run_manage, subprocess_env
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.waiting import wait_until
from tests.scraping.pages import PageServer

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "127.0.0.11"
EVERY = timedelta(seconds=2)
TEAM_TASK = "examples.teamjobs.tasks.orders_digest"


@pytest.fixture
def hook():
    server = PageServer(ADDRESS)
    server.pages["/hooks/nightly"] = lambda handler: handler.reply(200, b'{"ok": true}')
    server.pages["/hooks/broken"] = lambda handler: handler.reply(500, b"upstream down")
    yield server
    server.shutdown()
    server.server_close()


def finished(name: str) -> list[ScheduleRun]:
    return list(ScheduleRun.objects.filter(schedule_name=name, status__in=ScheduleRun.FINISHED).order_by("id"))


def test_a_teams_task_an_http_call_and_a_command_run_from_beat_into_the_ledger(start_process, app_env, hook):
    env = {**app_env, "EXTRA_APPS": "examples.teamjobs", "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
           "SCRAPER_HOST_INTERVAL_SECONDS": "0.1", "JOB_SECRET_HOOK_TOKEN": "from-the-workers-environment"}
    call = {"url": hook.url(ADDRESS, "/hooks/nightly"), "allowed_port": hook.port, "method": "POST",
            "body": '{"run": "nightly"}', "secret_headers": {"Authorization": "JOB_SECRET_HOOK_TOKEN"}}
    interval_task("team digest", EVERY, task=TEAM_TASK, kwargs=json.dumps({"team": "orders"}))
    interval_task("call the hook", EVERY, task="jobs.http_call", kwargs=json.dumps(call))
    interval_task("broken hook", EVERY, task="jobs.http_call",
                  kwargs=json.dumps({**call, "url": hook.url(ADDRESS, "/hooks/broken")}))
    interval_task("dry cleanup", EVERY, task="jobs.run_command",
                  kwargs=json.dumps({"command": "cleanup", "arguments": ["sessions", "--dry-run"]}))

    start_process("worker", worker_argv(), **env)
    start_process("beat", celery_argv("beat"), **env)
    names = ("team digest", "call the hook", "broken hook", "dry cleanup")
    wait_until(lambda: all(finished(name) for name in names), timeout=60,
               what=lambda: f"a finished run of each of {names}: "
                            f"{list(ScheduleRun.objects.values_list('schedule_name', 'status', 'error'))}")

    digest = finished("team digest")[0]
    assert digest.status == ScheduleRun.Status.SUCCEEDED, digest.error
    assert digest.output["team"] == "orders" and digest.output["slot"] == digest.scheduled_for.isoformat()

    called = finished("call the hook")[0]
    assert called.status == ScheduleRun.Status.SUCCEEDED, called.error
    assert (called.output["status"], called.output["answer"]) == (200, '{"ok": true}')
    path, headers = next(request for request in hook.requests if request[0] == "/hooks/nightly")
    assert headers["Authorization"] == "from-the-workers-environment"
    assert ("/hooks/nightly", b'{"run": "nightly"}') in hook.posted

    broken = finished("broken hook")[0]
    assert broken.status == ScheduleRun.Status.FAILED
    assert "HTTP 500 where 2xx was expected" in broken.error and broken.output["answer"] == "upstream down"

    cleanup = finished("dry cleanup")[0]
    assert cleanup.status == ScheduleRun.Status.SUCCEEDED, cleanup.error
    assert cleanup.output["exit_status"] == 0 and "sessions" in cleanup.output["output"]


def test_an_extra_app_that_does_not_import_stops_start_up_with_one_line(tmp_path):
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(tmp_path), EXTRA_APPS="examples.teamjobs, teamjbos"))

    assert result.returncode == 2, result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "configuration error: EXTRA_APPS: the module 'teamjbos' does not import: "
        "ModuleNotFoundError: No module named 'teamjbos'"]


def test_an_extra_apps_tasks_are_offered_in_the_schedule_forms_task_list(tmp_path):
    # The widget the form's "Task (registered)" box renders with, as the admin's page does.
    listed = ("from scheduler.admin_schedules import PeriodicTaskForm; "
              "print([value for value, _ in PeriodicTaskForm().fields['regtask'].widget.choices])")
    env = subprocess_env(DATA_DIR=str(tmp_path), EXTRA_APPS="examples.teamjobs")
    result = run_manage("shell", "-c", listed, env=env)

    assert result.returncode == 0, result.stderr
    assert TEAM_TASK in result.stdout and "jobs.http_call" in result.stdout and "jobs.run_command" in result.stdout
