"""Previews of a report: asked for in the admin, built by a worker, shown to whoever asked.

A heavy report built inside the web request ran past the web server's timeout and got its
process killed; a worker builds it with the sections' own timeouts instead, while the page
waits (reports.admin_views).
"""

import logging
from datetime import date

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from reports.models import Report, ReportFile, ReportPreview, ReportSection
from reports.rendering import html_with_embedded_images
from reports.services import report_render

logger = logging.getLogger(__name__)

# Beyond its SQL sections' timeouts, what a build may take: the operations summary, the charts
# and the email's rendering.
PREVIEW_MARGIN_SECONDS = 60


def preview_time_limit(report: Report) -> int:
    """The worker's soft time limit for a preview of `report`, in seconds."""
    timeouts = report.sections.filter(kind=ReportSection.Kind.SQL).aggregate(total=Sum("timeout_seconds"))["total"]
    return (timeouts or 0) + PREVIEW_MARGIN_SECONDS


def preview_request(*, report: Report, user, day: date) -> tuple[ReportPreview, bool]:
    """The preview of `report` for `day` that `user` waits for, and whether it is new (then the
    caller sends it to a worker). One still on its way is reused, so clicking again does not
    build a heavy report twice; a new one replaces the user's earlier previews of the report."""
    with transaction.atomic():
        pending = (ReportPreview.objects.filter(report=report, requested_by=user, day=day)
                   .exclude(status__in=(ReportPreview.Status.READY, ReportPreview.Status.FAILED)).first())
        if pending is not None and not pending.gave_up_because(now=timezone.now()):
            return pending, False
        ReportPreview.objects.filter(report=report, requested_by=user).delete()
        preview = ReportPreview.objects.create(report=report, requested_by=user, day=day,
                                               time_limit_seconds=preview_time_limit(report))
    return preview, True


def preview_build(*, preview_id: int) -> ReportPreview | None:
    """Build a waiting preview; None when it is gone or another delivery of its message took it.

    Taken with a conditional UPDATE: with late acknowledgement a message can be delivered twice,
    and the report is built once.
    """
    if not ReportPreview.objects.filter(pk=preview_id, status=ReportPreview.Status.WAITING).update(
            status=ReportPreview.Status.BUILDING, started_at=timezone.now()):
        return None
    preview = ReportPreview.objects.select_related("report").get(pk=preview_id)
    report = preview.report
    try:
        rendered = report_render(report=report, slot=report.slot_on(preview.day))
    except SoftTimeLimitExceeded:
        _finish(preview, status=ReportPreview.Status.FAILED,
                error=f"The build took longer than its limit of {preview.time_limit_seconds} seconds (the SQL "
                      "sections' timeouts and a margin) and was stopped.")
    except Exception as error:
        logger.exception("preview of report %r for %s could not be built", report.name, preview.day)
        _finish(preview, status=ReportPreview.Status.FAILED, error=f"{type(error).__name__}: {error}")
    else:
        images = {file.content_id: (file.content_type, file.content)
                  for file in rendered.files if file.kind == ReportFile.Kind.CHART}
        _finish(preview, status=ReportPreview.Status.READY, page=html_with_embedded_images(rendered.html, images))
    return preview


def preview_not_sent(*, preview: ReportPreview, error: Exception) -> None:
    """Record that `preview` never reached a worker (the broker did not answer)."""
    _finish(preview, status=ReportPreview.Status.FAILED,
            error=f"no worker could be asked to build it: the broker did not answer ({error}).")


def _finish(preview: ReportPreview, **fields) -> None:
    preview.finished_at = timezone.now()
    for field, value in fields.items():
        setattr(preview, field, value)
    # By filter, not save(): a preview replaced meanwhile stays deleted.
    ReportPreview.objects.filter(pk=preview.pk).update(finished_at=preview.finished_at, **fields)

