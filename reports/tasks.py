from celery import shared_task

from reports.models import Report, ReportDelivery
from reports.services import report_deliver
from scheduler.run_recording import scheduled_for


class DeliveriesFailed(RuntimeError):
    pass


@shared_task(bind=True)
def report_send(self, report_id: int) -> dict:
    """Beat's entry point: the day covered comes from the slot, never from this worker's clock."""
    report = Report.objects.get(pk=report_id)
    run = report_deliver(report=report, slot=scheduled_for(self.request))
    failed = list(run.deliveries.filter(status=ReportDelivery.Status.FAILED))
    if failed:
        # Fail the run in the ledger too, so the failure is seen where every run is reviewed.
        raise DeliveriesFailed("; ".join(f"{delivery.recipient}: {delivery.last_error}" for delivery in failed))
    return {"report": report.name, "covered_day": run.covered_day.isoformat(), "status": run.status,
            "sent": run.deliveries.filter(status=ReportDelivery.Status.SENT).count()}
