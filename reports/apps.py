from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Reports"

    def ready(self) -> None:
        # Connects the check of every data source to a worker's start.
        from reports import worker_start  # noqa: F401
