"""Reports' Celery entry point: build a report for its slot and deliver it.

The ledger's worker side (scheduler.worker.RecordedTask, the base of every task) marks the run
started, keeps its lease and records what this returns as the run's output, or the exception as
its error; the slot it was sent for comes from the message (scheduled_for), never the clock.
"""

import logging

from celery import shared_task
from celery.exceptions import Reject

from reports.delivery import ATTEMPTS, backoff_seconds
from reports.models import PREVIEW_KILL_SECONDS, Report, ReportDelivery, ReportPreview, ReportRun
from reports.permissions import RUN_SQL_REFUSED, may_build_report
from reports.previews import preview_build
from reports.services import report_deliver, report_schedules_orphaned_delete
from scheduler.worker import Skipped, scheduled_for

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
        return Skipped(f"report {report_id} was deleted")
    if not report.enabled:
        # A message sent before the report was disabled: nothing to do, and the ledger's output
        # says why.
        reason = f"report {report.name!r} is disabled"
        logger.warning("report_send skipped: %s", reason)
        return Skipped(reason)
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


def _run_now_refused(user, kwargs: dict) -> str:
    """"Run now" on a report's schedule builds the report: for one with SQL sections, only for
    whoever may run them (reports.permissions)."""
    report = Report.objects.filter(pk=kwargs.get("report_id")).first()
    if report is None or may_build_report(user, report):
        return ""
    return RUN_SQL_REFUSED.format("run a report that has SQL sections")


report_send.run_now_refused = _run_now_refused


def _pending(run: ReportRun, recipients: list[str]) -> list[str]:
    """The recipients whose last try failed for now: a retry sends to them."""
    return list(run.deliveries.filter(recipient__in=recipients, status=ReportDelivery.Status.PENDING)
                .values_list("recipient", flat=True))


@shared_task(ignore_result=True)
def report_preview_build(preview_id: int) -> dict:
    """Build a preview a staff member asked for (reports.previews); its page shows the outcome."""
    preview = preview_build(preview_id=preview_id)
    if preview is None:
        return {"skipped": f"preview {preview_id} is gone or was taken by another delivery"}
    return {"preview": preview_id, "status": preview.status}


# Sent by the admin's preview page, never by beat: not offered or accepted as a schedule's task.
report_preview_build.schedulable = False


def report_preview_send(preview: ReportPreview) -> None:
    """Hand `preview` to a worker on the reports queue, with its time limits."""
    report_preview_build.apply_async(
        args=[preview.pk], soft_time_limit=preview.time_limit_seconds,
        time_limit=preview.time_limit_seconds + PREVIEW_KILL_SECONDS,
    )
