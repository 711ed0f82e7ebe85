"""The composition root: settings, environment, urls, wsgi, the Celery app, `prepare` and
`launch`. It puts the apps together; no app imports it.

The Celery app is loaded with Django so that tasks sent from the web process (the admin's
"run now") use the same configuration as the workers.
"""

from wiring.celery import app as celery_app

__all__ = ["celery_app"]
