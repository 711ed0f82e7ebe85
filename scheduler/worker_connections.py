"""A worker's database connections, kept from task to task as a web process keeps them from
request to request: closed only once older than CONN_MAX_AGE or found broken (CONN_HEALTH_CHECKS).

Celery's Django fixup closes every connection before and after each task unless
CELERY_DB_REUSE_MAX is set (wiring.settings sets it out of the way), so each run of a recorded
task opened a new PostgreSQL session: a connect and authentication per run, most of a short
task's cost. This is Django's own check for a request, run before each task instead.
"""

from celery.signals import task_prerun
from django.db import close_old_connections


@task_prerun.connect
def connections_checked(sender=None, **kwargs) -> None:
    # Not for a task run in the caller's own process (apply(), eager): the connections are the
    # caller's, in the middle of its work (a test's transaction).
    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()
