"""The Celery app `scheduler`: `celery -A scheduler worker` and `celery -A scheduler beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")

# Every task records its own run in the ledger when beat sent it (scheduler/run_recording.py).
app = Celery("scheduler", task_cls="scheduler.run_recording:RecordedTask")
# Every CELERY_* Django setting configures the app; each one is commented in settings.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
