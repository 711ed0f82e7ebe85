"""A run whose task no worker knows is recorded as failed, with the reason, by the worker that
received it.

A schedule written past the admin form (the ORM, SQL, an import) may name a task no worker has
registered. Beat sends it all the same: beat need not carry the tasks' code, and a worker may
know tasks beat does not. The worker that receives it drops the message ("Received unregistered
task") before any task code runs, so the ledger kept the run *sent* with no sign of trouble, and
its lost-message check would send it again, to be dropped again. Celery's task_unknown signal
comes at that point with the message, whose headers name the run.
"""

import logging

from celery.signals import task_unknown
from django.db import DatabaseError
from django.utils import timezone

from scheduler.messages import RUN_HEADER
from scheduler.models import ScheduleRun

logger = logging.getLogger(__name__)


@task_unknown.connect
def unknown_task_run_failed(sender=None, message=None, name: str = "", id: str = "", **kwargs) -> None:
    run_id = (getattr(message, "headers", None) or {}).get(RUN_HEADER)
    if run_id is None:
        return
    try:
        # This copy's run only (its task id), and only while no copy has started it.
        recorded = ScheduleRun.objects.filter(
            id=int(run_id), task_id=id, status__in=(ScheduleRun.Status.CLAIMED, ScheduleRun.Status.SENT),
        ).update(status=ScheduleRun.Status.FAILED, finished_at=timezone.now(), error=(
            f"No task named {name!r} is registered on the worker that received the run, so it was dropped "
            "unstarted. Correct the schedule's task, or deploy the code that defines it to the workers."))
    except (DatabaseError, ValueError):
        logger.exception("could not record run %s of the unknown task %r as failed", run_id, name)
        return
    if recorded:
        logger.error("run %s failed: its task %r is not registered on this worker", run_id, name)
