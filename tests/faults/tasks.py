"""The fault suite's probe: a task that notes each execution in a plain file, which depends on
neither Redis nor the database, so what ran is known whatever the ledger says. Workers load it
with `--include tests.faults.tasks`."""

import os
import time

from celery import shared_task

from scheduler.messages import SCHEDULE_NAME_HEADER
from scheduler.worker import scheduled_for


def _note(path: str, *fields: str) -> None:
    # One write() of one short line to a file opened for appending: lines of concurrent
    # processes never interleave, and a line written survives the process being killed.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, ("\t".join(fields) + "\n").encode())
    finally:
        os.close(fd)


@shared_task(bind=True)
def probe(self, log_path: str, seconds: float = 0.0) -> str:
    """Notes `start` (schedule, slot, pid, task id), runs for `seconds`, notes `done`."""
    name = (self.request.headers or {}).get(SCHEDULE_NAME_HEADER, "")
    slot = scheduled_for(self.request).isoformat()
    fields = (name, slot, str(os.getpid()), self.request.id or "")
    _note(log_path, "start", *fields)
    if seconds:
        time.sleep(seconds)
    _note(log_path, "done", *fields)
    return slot
