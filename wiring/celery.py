"""The Celery app: `celery -A scheduler worker` and `celery -A scheduler beat` (scheduler/celery.py
hands over to this one)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wiring.settings")

# Every task records its own run in the ledger when beat sent it (scheduler/worker.py). A
# string: the class needs Django's models, which load after this app exists.
app = Celery("scheduler", task_cls="scheduler.worker:RecordedTask")
# Every CELERY_* Django setting configures the app; each one is commented in settings.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
