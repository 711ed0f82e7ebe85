from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        # Connects the worker's liveness to Celery's event heartbeat (a signal receiver).
        from scheduler import worker_liveness  # noqa: F401
        from scheduler.crontab_zones import tolerate_unknown_zones

        tolerate_unknown_zones()
