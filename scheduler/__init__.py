# The Celery app is loaded with Django so that tasks sent from the web process (the admin's
# "run now") use the same configuration as the workers.
from scheduler.celery import app as celery_app

__all__ = ["celery_app"]
