from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        # Signal receivers: the worker's liveness on Celery's event heartbeat, and its database
        # connections checked (not closed) before each task.
        from scheduler import worker_connections, worker_liveness  # noqa: F401
        from scheduler.crontab_zones import tolerate_unknown_zones

        tolerate_unknown_zones()
