"""The Celery app `scheduler`: `celery -A scheduler worker` and `celery -A scheduler beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")

app = Celery("scheduler")
# Every CELERY_* Django setting configures the app; each one is commented in settings.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
