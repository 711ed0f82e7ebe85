"""A task for the tests only; workers load it with `--include tests.e2e.tasks`."""

import time
from pathlib import Path

from celery import shared_task


@shared_task
def note_start_then_sleep(notes_path: str, seconds: float) -> str:
    notes = Path(notes_path)
    with notes.open("a") as f:
        f.write("started\n")
    time.sleep(seconds)
    with notes.open("a") as f:
        f.write("finished\n")
    return "finished"
