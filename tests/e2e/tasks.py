"""Tasks for the tests only (workers load them with `--include tests.e2e.tasks`), and what they record, read back."""

import time
from collections import Counter
from pathlib import Path

from celery import current_app, shared_task

from scheduler.worker import scheduled_for


@shared_task
def note_start_then_sleep(notes_path: str, seconds: float) -> str:
    """Notes "started", sleeps `seconds` (only the first time: a delivery again after its worker
    was killed finishes at once, far inside any time limit), notes "finished"."""
    notes = Path(notes_path)
    again = notes.exists() and "started" in notes.read_text().splitlines()
    with notes.open("a") as f:
        f.write("started\n")
    if not again:
        time.sleep(seconds)
    with notes.open("a") as f:
        f.write("finished\n")
    return "finished"


def note_start_then_sleep_sent(broker_url: str, notes_path, seconds: float):
    """note_start_then_sleep sent through the broker at `broker_url` (a test's own Redis); its AsyncResult."""
    with current_app.connection_for_write(broker_url) as connection:
        return note_start_then_sleep.apply_async(args=[str(notes_path), seconds], connection=connection)


@shared_task(bind=True)
def record_slot(self, notes_path: str) -> str:
    """Appends the run's task id and slot, so a test can count executions per run."""
    slot = scheduled_for(self.request).isoformat()
    with Path(notes_path).open("a") as f:
        f.write(f"{self.request.id} {slot}\n")
    return slot


def executions(notes: Path) -> Counter:
    """How often each run's task executed, by Celery task id, from record_slot's notes."""
    lines = notes.read_text().splitlines() if notes.exists() else []
    return Counter(line.split()[0] for line in lines)


@shared_task
def database_session() -> str:
    """Which PostgreSQL session ran this task: its backend's pid."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return str(cursor.fetchone()[0])
