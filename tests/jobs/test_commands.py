"""The management command job: only listed commands, arguments parsed by the command's own
parser when the schedule is saved, output and exit status recorded."""

import pytest

from jobs.commands import command_problems
from jobs.tasks import run_command
from scheduler.worker import JobFailed

pytestmark = pytest.mark.django_db


def test_a_listed_command_runs_with_its_arguments_and_its_output_is_recorded():
    output = run_command.apply(kwargs={"command": "cleanup", "arguments": ["sessions", "--dry-run"]}).get()

    assert (output["command"], output["arguments"], output["exit_status"]) == (
        "cleanup", ["sessions", "--dry-run"], 0)
    assert "sessions" in output["output"] and not output["output_cut"]
    assert "\r" not in output["output"] and "rows/s" not in output["output"]  # no progress bar off a terminal


def test_a_command_that_fails_fails_the_run_with_its_status_and_output():
    with pytest.raises(JobFailed, match="manage.py send_report exited with status 1") as failed:
        run_command.apply(kwargs={"command": "send_report", "arguments": ["No such report"]}, throw=True).get()
    assert failed.value.output["exit_status"] == 1


@pytest.mark.parametrize("kwargs, named", [
    ({"command": "shell", "arguments": ["-c", "print(1)"]}, "'command' 'shell' is not one a schedule may run"),
    ({"command": "flush"}, "allowed: cleanup, send_report, scrape (JOB_COMMANDS)"),
    ({"command": "cleanup", "arguments": ["--no-such-option"]}, "'arguments': Error: unrecognized arguments"),
    ({"command": "cleanup", "arguments": "sessions"}, "'arguments' must be a JSON list of strings"),
    ({"command": "cleanup", "shell": True}, "unknown key(s) 'shell'"),
])
def test_what_is_not_allowed_is_refused_naming_the_key(kwargs, named):
    problems = command_problems(kwargs)
    assert any(named in problem for problem in problems), problems


def test_the_list_comes_from_job_commands(settings):
    settings.JOB_COMMANDS = ("cleanup",)
    assert "allowed: cleanup (JOB_COMMANDS)" in command_problems({"command": "scrape"})[0]
    assert command_problems({"command": "cleanup", "arguments": ["--dry-run"]}) == []
