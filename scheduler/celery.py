"""`celery -A scheduler worker|beat`, kept for outside tools: the app is wiring.celery's."""

from wiring.celery import app

__all__ = ["app"]
