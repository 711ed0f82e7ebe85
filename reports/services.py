import logging
from datetime import datetime, time

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from reports.delivery import (
    deliver_to_recipient,
    deliveries_ensure,
    deliveries_send,
    delivery_claim,
    delivery_finish,
    delivery_sent,
)
from reports.models import Report, ReportDelivery, ReportFile, ReportRun, ReportSection
from reports.rendering import RenderedEmail, email_render
from reports.sections import CoveredPeriod, section_build
from shared.owned_schedules import (
    orphaned_schedules_delete,
    owned_schedule_delete,
    owned_schedule_sync,
    timing_row,
)

logger = logging.getLogger(__name__)

SEND_TASK = "reports.tasks.report_send"


class ReportNotBuilt(RuntimeError):
    pass


def report_schedule_name(report: Report) -> str:
    return f"Report: {report.name}"


def report_schedule_sync(*, report: Report) -> PeriodicTask:
    """Create or update the report's PeriodicTask from its own fields; the report owns its timing.

    Enabled only while the report is enabled and has a recipient, so a report nobody receives
    never runs.
    """
    crontab = timing_row(CrontabSchedule, **report.crontab_fields())
    return owned_schedule_sync(
        owner=report, task=SEND_TASK, owner_kwarg="report_id", name=report_schedule_name(report),
        crontab=crontab, enabled=report.is_due_to_run(),
        description=(
            f"Sends the report {report.name!r} (Reports › Reports). Its time, days and timezone are set "
            "on the report's page; changes made here to them are replaced when the report is saved."
        ),
    )


def report_save(*, report: Report) -> Report:
    """Save a report and bring its schedule in step: the one way a report is written, by the
    admin, commands, seeding and the shell alike, so no report is ever left without one."""
    with transaction.atomic():
        report.save()
        report_schedule_sync(report=report)
    return report


def report_delete(*, report: Report) -> None:
    """Delete a report and its schedule; its past runs stay in the ledger (SET_NULL)."""
    with transaction.atomic():
        owned_schedule_delete(owner=report)


def report_schedules_orphaned_delete(*, report_id: int) -> int:
    """Delete the schedules still sending a report that is gone; return how many.

    A report deleted past report_delete (a queryset's delete() in the shell or a script) leaves
    its schedule behind; the first run it sends finds the report missing and clears it up.
    """
    return orphaned_schedules_delete(task=SEND_TASK, owner_kwarg="report_id", owner_id=report_id)


DAILY_OPERATIONS = "Daily operations"


def reports_seed() -> list[tuple[str, bool]]:
    """Create the "Daily operations" report when missing; an existing one stays as edited (its
    covered period too: one seeded before covered periods keeps the day so far, migration 0004)."""
    report = Report.objects.filter(name=DAILY_OPERATIONS).first()
    created = report is None
    if created:
        report = report_save(report=Report(
            name=DAILY_OPERATIONS, timezone=settings.TIME_ZONE, send_at=time(7, 0),
            covered_period=Report.Period.PREVIOUS_DAY,
            description="Every schedule's runs on the previous day, by outcome, with failures and the slowest "
                        "runs, and what cleanup deleted. Add a recipient to start sending it.",
        ))
        ReportSection.objects.create(
            report=report, position=1, kind=ReportSection.Kind.OPERATIONS_SUMMARY, name="Operations summary"
        )
    elif report.schedule_id is None:
        report_schedule_sync(report=report)
    return [(DAILY_OPERATIONS, created)]


def report_render(*, report: Report, slot: datetime) -> RenderedEmail:
    """Build every section for the period `slot` covers and render the email; stores and sends
    nothing (preview)."""
    covered = CoveredPeriod.of(report, slot)
    outputs = [section_build(section, covered=covered, position=position)
               for position, section in enumerate(report.sections.all(), start=1)]
    return email_render(report=report, covered=covered, outputs=outputs)


def report_run_get_or_build(*, report: Report, slot: datetime) -> ReportRun:
    """The run for (report, the slot's day): the archived one if built, else built now and archived.

    Two executions building at once both render, but only one row is stored (unique per
    day); the other execution sends what that row holds, so every recipient gets one version.
    """
    day = report.run_day(slot)
    run = ReportRun.objects.filter(report=report, covered_day=day).first()
    if run is not None and run.status != ReportRun.Status.FAILED:
        return run
    fields, rendered = _build(report, slot)
    fields["built_at"], fields["scheduled_for"] = timezone.now(), slot
    fields["period_start"], fields["period_end"] = report.period_for(slot)
    with transaction.atomic():
        run, created = ReportRun.objects.get_or_create(report=report, covered_day=day, defaults=fields)
        if not created:
            # Only a failed build is replaced, and only by one execution.
            if not ReportRun.objects.filter(pk=run.pk, status=ReportRun.Status.FAILED).update(**fields):
                run.refresh_from_db()
                return run
            run.files.all().delete()
            run.refresh_from_db()
        if rendered is not None:
            ReportFile.objects.bulk_create(
                ReportFile(run=run, kind=file.kind, filename=file.filename, content_type=file.content_type,
                           content_id=file.content_id, content=file.content, size=len(file.content),
                           attached=file.attached)
                for file in rendered.files
            )
    return run


def _build(report: Report, slot: datetime) -> tuple[dict, RenderedEmail | None]:
    try:
        rendered = report_render(report=report, slot=slot)
    except Exception as error:
        logger.exception("report %r for %s could not be built", report.name, slot.isoformat())
        return {"status": ReportRun.Status.FAILED, "error": f"{type(error).__name__}: {error}",
                "subject": "", "html": "", "text": ""}, None
    status = ReportRun.Status.PARTIAL if rendered.failed_sections else ReportRun.Status.OK
    return {"status": status, "error": rendered.error, "subject": rendered.subject, "html": rendered.html,
            "text": rendered.text}, rendered


def report_deliver(*, report: Report, slot: datetime, retry: bool = False, final_attempt: bool = True) -> ReportRun:
    """Build (or reuse) the run for `slot` and try once to send it to each recipient not sent
    yet (on a `retry`, to those whose last try failed for now, pending); with `final_attempt`
    False, temporary failures stay pending for the next try."""
    run = report_run_get_or_build(report=report, slot=slot)
    if run.status == ReportRun.Status.FAILED:
        raise ReportNotBuilt(f"report {report.name!r} for {run.covered_day} could not be built: {run.error}")
    recipients = report.recipient_list()
    deliveries_ensure(run=run, recipients=recipients)
    unsent = run.deliveries.filter(recipient__in=recipients).exclude(status=ReportDelivery.Status.SENT)
    if retry:
        unsent = unsent.filter(status=ReportDelivery.Status.PENDING)
    deliveries_send(run=run, deliveries=list(unsent), final_attempt=final_attempt)
    return run


def delivery_resend(*, delivery: ReportDelivery) -> str:
    """Send one recipient's copy again on purpose, one attempt: "" when sent, else why not.

    A copy being sent right now is left alone. A failed attempt never makes a copy that was sent
    look unsent: a SENT row stays SENT, with the server's reply in last_error.
    """
    delivery.refresh_from_db()
    before = delivery.status
    if not delivery_claim(delivery, statuses=(before,)):
        return "it is being sent right now"
    failure = deliver_to_recipient(delivery.run, delivery)
    if failure is None:
        delivery_sent(delivery)
        return ""
    kept = ReportDelivery.Status.SENT if before == ReportDelivery.Status.SENT else ReportDelivery.Status.FAILED
    delivery_finish(delivery, kept)
    return failure.reply
