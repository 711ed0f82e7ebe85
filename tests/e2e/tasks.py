"""A task for the tests only; workers load it with `--include tests.e2e.tasks`."""

import time
from pathlib import Path

from celery import shared_task

from scheduler.worker import scheduled_for


@shared_task
def note_start_then_sleep(notes_path: str, seconds: float) -> str:
    notes = Path(notes_path)
    with notes.open("a") as f:
        f.write("started\n")
    time.sleep(seconds)
    with notes.open("a") as f:
        f.write("finished\n")
    return "finished"


@shared_task(bind=True)
def record_slot(self, notes_path: str) -> str:
    """Appends the run's task id and slot, so a test can count executions per run."""
    slot = scheduled_for(self.request).isoformat()
    with Path(notes_path).open("a") as f:
        f.write(f"{self.request.id} {slot}\n")
    return slot
