"""The management command job: one of an allow-listed set of `manage.py` commands (JOB_COMMANDS;
the product's own `cleanup`, `send_report` and `scrape` by default), run in the worker with its
arguments as a JSON list, its output (capped) and exit status in the run's output.

No shell is involved: the command is called by name through Django's call_command, its arguments
are parsed by the command's own parser, so what a schedule can do is what the listed commands'
options allow. The same parser checks the arguments when the schedule is saved.

    kwargs: {"command": "cleanup", "arguments": ["sessions", "--dry-run"]}
"""

import contextlib
import io

from django.conf import settings
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError

# Kept of the command's output (stdout and stderr together), from its end: what it said last.
OUTPUT_CHARS = 8000
KNOWN_KEYS = {"command", "arguments"}


def command_problems(kwargs: dict) -> list[str]:
    """What is wrong with the command and arguments a schedule's kwargs give, each naming its key."""
    problems = []
    unknown = sorted(set(kwargs) - KNOWN_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(map(repr, unknown))}; the keys are 'command' and 'arguments'")
    name, arguments = kwargs.get("command"), kwargs.get("arguments", [])
    allowed = ", ".join(settings.JOB_COMMANDS) or "none (JOB_COMMANDS is empty)"
    if not isinstance(name, str) or name not in settings.JOB_COMMANDS:
        problems.append(f"'command' {name!r} is not one a schedule may run; allowed: {allowed} (JOB_COMMANDS)")
    elif name not in get_commands():
        problems.append(f"'command' {name!r} is allowed by JOB_COMMANDS but no installed app has it")
    if not isinstance(arguments, list) or not all(isinstance(argument, str) for argument in arguments):
        problems.append("'arguments' must be a JSON list of strings, e.g. [\"sessions\", \"--dry-run\"]")
    elif not problems:
        refusal = _parse_refusal(name, arguments)
        if refusal:
            problems.append(f"'arguments': {refusal}")
    return problems


def _parse_refusal(name: str, arguments: list[str]) -> str:
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    try:
        # Outside a command line, the parser's errors are CommandErrors rather than an exit.
        parser.parse_args(arguments)
    except CommandError as error:
        return str(error)
    return ""


def command_run(name: str, arguments: list[str]) -> tuple[dict, bool]:
    """Run the command; (output for the ledger, whether it succeeded).

    Output is read from the command's own streams and from sys.stdout and sys.stderr (a progress
    bar writes there): a prefork pool process runs one task at a time, so no other task's output
    is mixed in."""
    captured = io.StringIO()
    status, error = 0, ""
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        try:
            call_command(name, *arguments, stdout=captured, stderr=captured)
        except CommandError as failed:
            status, error = getattr(failed, "returncode", 1), str(failed)
        except SystemExit as exited:
            code = exited.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
            error = "" if isinstance(code, int | None) else str(code)
    text = captured.getvalue()
    output = {"command": name, "arguments": arguments, "exit_status": status,
              "output": text[-OUTPUT_CHARS:], "output_cut": len(text) > OUTPUT_CHARS}
    if error:
        output["error"] = error
    return output, status == 0
