from django.apps import AppConfig
from django.db.models.signals import post_delete


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Reports"

    def ready(self) -> None:
        from reports.models import Report
        from reports.services import report_schedule_delete

        # A signal, not Report.delete(): the admin's bulk delete and querysets skip delete().
        post_delete.connect(
            lambda sender, instance, **kwargs: report_schedule_delete(report=instance),
            sender=Report, weak=False, dispatch_uid="reports_report_schedule_delete",
        )
