"""Reports' Celery entry point: build a report for its slot and deliver it.

The ledger's worker side (scheduler.worker.RecordedTask, the base of every task) marks the run
started, keeps its lease and records what this returns as the run's output, or the exception as
its error; the slot it was sent for comes from the message (scheduled_for), never the clock.
"""

import logging

from celery import shared_task
from celery.exceptions import Reject

from reports.delivery import ATTEMPTS, backoff_seconds
from reports.models import Report, ReportDelivery, ReportRun
from reports.services import report_deliver, report_schedules_orphaned_delete
from scheduler.worker import scheduled_for

logger = logging.getLogger(__name__)


class DeliveriesFailed(RuntimeError):
    pass


class ReportPartial(RuntimeError):
    """Every recipient got the email, but a section failed: raised so the ledger shows the run failed."""


@shared_task(bind=True, max_retries=ATTEMPTS - 1)
def report_send(self, report_id: int) -> dict:
    """Beat's entry point: the period covered comes from the slot, never from this worker's clock."""
    report = Report.objects.filter(pk=report_id).first()
    if report is None:
        removed = report_schedules_orphaned_delete(report_id=report_id)
        logger.warning("report_send skipped: report %s was deleted; %d schedule(s) of it removed", report_id, removed)
        return {"skipped": f"report {report_id} was deleted"}
    if not report.enabled:
        # A message sent before the report was disabled: nothing to do, and the ledger's output
        # says why.
        reason = f"report {report.name!r} is disabled"
        logger.warning("report_send skipped: %s", reason)
        return {"skipped": reason}
    final_attempt = self.request.retries >= self.max_retries
    run = report_deliver(report=report, slot=scheduled_for(self.request), retry=self.request.retries > 0,
                         final_attempt=final_attempt)
    recipients = report.recipient_list()
    if not final_attempt and _pending(run, recipients):
        # Celery holds the wait, not this worker. The retry is a new delivery of the same run
        # (the ledger puts it back to sent), and it sends only what is still unsent.
        try:
            raise self.retry(countdown=backoff_seconds(self.request.retries + 1))
        except Reject as error:
            # The retry could not be published (the broker went away): fail the run where it is
            # reviewed; the pending copies go to a later run, `send_report` or a re-send.
            raise DeliveriesFailed(f"the next try could not be scheduled ({error.reason}); not sent yet: "
                                   + ", ".join(sorted(_pending(run, recipients)))) from None
    # Fail the run in the ledger for anything short of every recipient sent and every section
    # built, so the failure is seen where every run is reviewed.
    partial = f"partial: {run.error}" if run.status == ReportRun.Status.PARTIAL else ""
    unsent = run.deliveries.filter(recipient__in=recipients).exclude(status=ReportDelivery.Status.SENT)
    if unsent:
        raise DeliveriesFailed("; ".join(
            [f"{delivery.recipient}: {delivery.last_error or delivery.get_status_display().lower()}"
             for delivery in unsent] + ([partial] if partial else [])
        ))
    if partial:
        raise ReportPartial(partial)
    return {"report": report.name, "covered_day": run.covered_day.isoformat(), "status": run.status,
            "sent": run.deliveries.filter(status=ReportDelivery.Status.SENT).count()}


def _pending(run: ReportRun, recipients: list[str]) -> list[str]:
    """The recipients whose last try failed for now: a retry sends to them."""
    return list(run.deliveries.filter(recipient__in=recipients, status=ReportDelivery.Status.PENDING)
                .values_list("recipient", flat=True))
