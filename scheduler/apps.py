from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        # Signal receivers: the worker's liveness on Celery's event heartbeat, its database
        # connections checked (not closed) before each task, and runs of tasks it does not know.
        from scheduler import worker_connections, worker_liveness, worker_unknown_tasks  # noqa: F401
        from scheduler.crontab_zones import tolerate_unknown_zones

        tolerate_unknown_zones()
