"""What a run's Celery message carries: the schedule's args, kwargs, headers and routing, and
the run's own headers (run id, slot, schedule name) that the worker side of the ledger reads.

The admin form and beat ask the same question of a schedule's message fields
(`message_problems`), so what the form accepts is what beat can send.
"""

import json
from dataclasses import dataclass
from datetime import datetime

from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleRun

# Message headers a run carries; the worker reads them (scheduler.worker).
RUN_HEADER = "schedule_run_id"
SCHEDULED_FOR_HEADER = "scheduled_for"
SCHEDULE_NAME_HEADER = "schedule_name"


@dataclass(frozen=True)
class Dispatch:
    """Everything needed to publish one claimed run."""

    run_id: int
    schedule_id: int | None
    task_id: str
    task_name: str
    schedule_name: str
    scheduled_for: datetime
    args: list
    kwargs: dict
    options: dict
    # The schedule's timing when the run was claimed, so a claim given back does not reset a
    # due time that an edit has computed since.
    fingerprint: str = ""


def _message_fields(*, args: str, kwargs: str, headers: str) -> tuple[dict, dict[str, str]]:
    """A schedule's message fields parsed: (values by field, problems by field). Args must be
    a JSON list, kwargs and headers JSON objects."""
    values, problems = {}, {}
    for field, text, shape in (("args", args, list), ("kwargs", kwargs, dict), ("headers", headers, dict)):
        try:
            values[field] = json.loads(text or ("[]" if shape is list else "{}"))
        except ValueError as error:
            problems[field] = f"{field} is not valid JSON ({error})"
            continue
        if not isinstance(values[field], shape):
            expected = "list" if shape is list else "object"
            problems[field] = f"{field} must be a JSON {expected}, not {type(values[field]).__name__}"
    return values, problems


def message_problems(*, args: str, kwargs: str, headers: str) -> dict[str, str]:
    """What is wrong with a schedule's message fields, by field. The admin form and beat both
    ask this one question."""
    return _message_fields(args=args, kwargs=kwargs, headers=headers)[1]


def message_problem(task: PeriodicTask) -> str:
    return "; ".join(message_problems(args=task.args, kwargs=task.kwargs, headers=task.headers).values())


def dispatch_for(run: ScheduleRun, task: PeriodicTask, fingerprint: str = "") -> Dispatch:
    """The message of a run; only for a schedule whose message_problem() is empty."""
    options = {key: getattr(task, key) for key in ("queue", "exchange", "routing_key", "priority")
               if getattr(task, key) is not None}
    if task.expire_seconds:
        options["expires"] = task.expire_seconds
    fields, _ = _message_fields(args=task.args, kwargs=task.kwargs, headers=task.headers)
    return Dispatch(
        run_id=run.id, schedule_id=run.schedule_id, task_id=run.task_id, task_name=run.task_name,
        schedule_name=run.schedule_name, scheduled_for=run.scheduled_for, args=fields["args"],
        kwargs=fields["kwargs"], options={**options, "headers": fields["headers"]}, fingerprint=fingerprint,
    )


def run_headers(dispatch: Dispatch) -> dict:
    return {
        RUN_HEADER: dispatch.run_id,
        SCHEDULED_FOR_HEADER: dispatch.scheduled_for.isoformat(),
        SCHEDULE_NAME_HEADER: dispatch.schedule_name,
        # django-celery-results fills TaskResult.periodic_task_name from this header.
        "periodic_task_name": dispatch.schedule_name,
    }
