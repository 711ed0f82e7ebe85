"""What a run's Celery message carries: the schedule's args, kwargs, headers and routing, and
the run's own headers (run id, slot, schedule name) that the worker side of the ledger reads.

The admin form and beat ask the same question of a schedule's message fields
(`message_problems`), so what the form accepts is what beat can send.
"""

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from django.conf import settings
from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleRun

# Message headers a run carries; the worker reads them (scheduler.worker).
RUN_HEADER = "schedule_run_id"
SCHEDULED_FOR_HEADER = "scheduled_for"
SCHEDULE_NAME_HEADER = "schedule_name"
# Scheduled, catch-up or manual (ScheduleRun.Kind): a job that records runs of its own (cleanup's
# CleanupRun) says which it was.
RUN_KIND_HEADER = "schedule_run_kind"


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
    kind: str = ScheduleRun.Kind.SCHEDULED


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


# Celery's own message headers and the run's: a schedule's headers replacing one of them would
# run another task than the schedule shows ("task"), overwrite another run's result ("id"), or
# change how the worker treats the message (eta, timelimit, ignore_result...).
RESERVED_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries", "timelimit",
    "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result", "replaced_task_nesting",
    "stamped_headers", "stamps", "content_type", "content_encoding", "reply_to", "correlation_id",
    "priority", "delivery_mode", "delivery_info", "periodic_task_name", "task_name",
    RUN_HEADER, SCHEDULED_FOR_HEADER, SCHEDULE_NAME_HEADER, RUN_KIND_HEADER, "ledger_lease_waits",
})
# Celery's internal tasks (chord_unlock, backend_cleanup...) are not jobs: one scheduled retries
# forever, outlives its schedule and multiplies.
INTERNAL_TASK_PREFIX = "celery."


def message_problems(*, args: str, kwargs: str, headers: str, task: str = "", queue: str | None = None,
                     exchange: str | None = None, routing_key: str | None = None) -> dict[str, str]:
    """What is wrong with a schedule's message, by field. The admin form and beat both ask this
    one question, so what the form accepts is what beat sends, and a row written past the form
    (the ORM, SQL) is recorded not enqueued, with the reason, instead of reaching a worker.

    Routing may only name the queues the workers read (CELERY_TASK_QUEUES): the exchange
    `celeryev` with the routing key `worker.heartbeat` made every worker exit."""
    values, problems = _message_fields(args=args, kwargs=kwargs, headers=headers)
    reserved = sorted(RESERVED_HEADERS & set(values.get("headers") or {}))
    if reserved and "headers" not in problems:
        problems["headers"] = (f"headers may not set {', '.join(repr(name) for name in reserved)}: Celery and the "
                               "run ledger set those themselves")
    if task.startswith(INTERNAL_TASK_PREFIX):
        problems["task"] = f"{task!r} is one of Celery's internal tasks, not a job that may be scheduled"
    elif not task_schedulable(task):
        problems["task"] = f"{task!r} is one of the product's internal tasks, not a job that may be scheduled"
    # A job whose kwargs say what to do (the HTTP call's URL, the command job's command) checks
    # them itself: a refused URL or a command outside the list is refused here, not at the worker.
    check = getattr(current_app.tasks.get(task), "kwargs_problems", None) if task else None
    if check is not None and "kwargs" not in problems:
        said = check(values["kwargs"])
        if said:
            problems["kwargs"] = "; ".join(said)
    queues = routed_queues()
    for field, value in (("queue", queue), ("exchange", exchange), ("routing_key", routing_key)):
        if value and value not in queues:
            problems[field] = (f"{field.replace('_', ' ')} {value!r} is not one the workers read; use one of "
                               f"{', '.join(sorted(queues))}, or leave it empty for the task's own queue")
    return problems


def task_schedulable(name: str) -> bool:
    """Whether a registered task may be a schedule's (an internal one says `schedulable = False`)."""
    return not name.startswith(INTERNAL_TASK_PREFIX) and getattr(current_app.tasks.get(name), "schedulable", True)


def run_now_refused(schedule: PeriodicTask, user) -> str:
    """Why `user` may not run `schedule` by hand, in a sentence, as its task says through a
    `run_now_refused(user, kwargs)` of its own (a report with SQL sections runs its queries with
    the site's database access); "" when they may."""
    check = getattr(current_app.tasks.get(schedule.task), "run_now_refused", None)
    values, problems = _message_fields(args=schedule.args, kwargs=schedule.kwargs, headers="")
    return "" if check is None or problems else check(user, values["kwargs"])


def argument_problems(*, run: Callable, args: str, kwargs: str) -> dict[str, str]:
    """What is wrong with calling a task's `run` (Celery's, without `self` for a bound task) with a
    schedule's args and kwargs, by field: the worker would fail every run with a TypeError.

    Only for args and kwargs that message_problems accepts. The slot a run is for comes in a
    message header (scheduler.worker.scheduled_for), never as an argument the task must take."""
    values, problems = _message_fields(args=args, kwargs=kwargs, headers="")
    if problems:
        return {}
    try:
        parameters = list(inspect.signature(run).parameters.values())
    except (TypeError, ValueError):
        # No signature to read (a builtin): the worker is left to say.
        return {}
    kinds = {parameter.kind for parameter in parameters}
    by_position = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    given, named = values["args"], set(values["kwargs"])
    if inspect.Parameter.VAR_POSITIONAL not in kinds and len(given) > len(by_position):
        takes = (f"at most {len(by_position)} positional argument(s) ({_names(p.name for p in by_position)})"
                 if by_position else "no positional arguments")
        problems["args"] = f"the task takes {takes}, not {len(given)}"
    filled = {p.name for p in by_position[:len(given)]}
    by_name = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = set() if inspect.Parameter.VAR_KEYWORD in kinds else named - set(by_name)
    missing = [p.name for p in parameters if p.default is p.empty and p.name not in filled | named
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    said = []
    if unknown:
        said.append(f"the task takes no argument named {_names(sorted(unknown))}; it takes {_names(by_name) or 'none'}")
    if filled & named:
        said.append(f"{_names(sorted(filled & named))} is given in args too")
    if missing:
        said.append(f"the task needs the argument {_names(missing)}")
    if said:
        problems["kwargs"] = "; ".join(said)
    return problems


def _names(names) -> str:
    return ", ".join(repr(name) for name in names)


def routed_queues() -> set[str]:
    """The queues the workers read: each is its own direct exchange and routing key (kombu's
    Queue(name))."""
    return {queue.name for queue in settings.CELERY_TASK_QUEUES}


def message_problem(task: PeriodicTask) -> str:
    return "; ".join(message_problems(args=task.args, kwargs=task.kwargs, headers=task.headers, task=task.task,
                                      queue=task.queue, exchange=task.exchange,
                                      routing_key=task.routing_key).values())


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
        kind=run.kind,
    )


def run_headers(dispatch: Dispatch) -> dict:
    return {
        RUN_HEADER: dispatch.run_id,
        SCHEDULED_FOR_HEADER: dispatch.scheduled_for.isoformat(),
        SCHEDULE_NAME_HEADER: dispatch.schedule_name,
        RUN_KIND_HEADER: dispatch.kind,
        # django-celery-results fills TaskResult.periodic_task_name from this header.
        "periodic_task_name": dispatch.schedule_name,
    }
