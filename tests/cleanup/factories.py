import uuid
from datetime import timedelta

from django.contrib.sessions.models import Session
from django.utils import timezone
from django_celery_results.models import TaskResult


def sessions(count: int, *, expires_in: timedelta) -> list[str]:
    keys = [uuid.uuid4().hex for _ in range(count)]
    Session.objects.bulk_create(
        Session(session_key=key, session_data="e30=", expire_date=timezone.now() + expires_in) for key in keys
    )
    return keys


def task_results(count: int, *, schedule: str | None, age: timedelta) -> list[int]:
    """`count` results, newest first, the newest finished `age` ago."""
    rows = TaskResult.objects.bulk_create(
        TaskResult(task_id=uuid.uuid4().hex, periodic_task_name=schedule, status="SUCCESS") for _ in range(count)
    )
    done = timezone.now() - age
    for i, row in enumerate(rows):
        # date_done is auto_now on save; an UPDATE sets the past.
        TaskResult.objects.filter(pk=row.pk).update(date_done=done - timedelta(seconds=i))
    return [row.pk for row in rows]
