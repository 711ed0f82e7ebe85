"""The Celery app: `celery -A scheduler worker` and `celery -A scheduler beat` (scheduler/celery.py
hands over to this one)."""

import os

import kombu.pools
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wiring.settings")

# Every task records its own run in the ledger when beat sent it (scheduler/worker.py). A
# string: the class needs Django's models, which load after this app exists.
app = Celery("scheduler", task_cls="scheduler.worker:RecordedTask")
# Every CELERY_* Django setting configures the app; each one is commented in settings.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def broker_connections_forget() -> None:
    """Drop the app's pooled broker connections and producers, so that the next publish connects
    to whatever `broker_url` says by then.

    The app builds both pools from the broker URL on first use and keeps them for the life of the
    process; Celery drops them only after a fork, through private attributes, which this reaches
    in one place. Tests that point the app at another Redis (or at none) need it.
    """
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
