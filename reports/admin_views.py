"""Staff-only pages of the reports admin: the archived email in the browser, its files, a preview.

Each is wrapped by `admin_site.admin_view` (staff login) and also checks the model's view
permission; a preview of a report with SQL sections also needs the right to run them. The
email's HTML is served with a policy that lets it load nothing but its own embedded images:
it holds query results, which should never run or fetch anything here.
"""

from datetime import date, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.utils import timezone

from reports.models import Report, ReportFile, ReportPreview, ReportRun
from reports.permissions import RUN_SQL_REFUSED, may_build_report
from reports.previews import preview_not_sent, preview_request
from reports.rendering import html_with_embedded_images
from reports.tasks import report_preview_send
from scheduler.publish import BROKER_ERRORS

EMAIL_PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# How far from today a preview may be: ?date=9999-12-31 answered 500 (finding the due time looks
# centuries ahead, past the last date Python has), and a day further off is a typing mistake.
PREVIEW_REACH = timedelta(days=36525)  # a century
PREVIEW_REFRESH_SECONDS = 2


def _require_view(request: HttpRequest, model) -> None:
    if not request.user.has_perm(f"reports.view_{model._meta.model_name}"):
        raise PermissionDenied


def _page_under_policy(html: str, *, status: int = 200) -> HttpResponse:
    response = HttpResponse(html, status=status)
    response["Content-Security-Policy"] = EMAIL_PAGE_POLICY
    return response


def run_email(request: HttpRequest, run_id: int) -> HttpResponse:
    _require_view(request, ReportRun)
    run = get_object_or_404(ReportRun, pk=run_id)
    images = {file.content_id: (file.content_type, bytes(file.content))
              for file in run.files.filter(kind=ReportFile.Kind.CHART)}
    return _page_under_policy(html_with_embedded_images(run.html, images))


def run_file(request: HttpRequest, run_id: int, file_id: int) -> HttpResponse:
    _require_view(request, ReportRun)
    file = get_object_or_404(ReportFile, pk=file_id, run_id=run_id)
    response = HttpResponse(bytes(file.content), content_type=file.content_type)
    response["Content-Disposition"] = f'attachment; filename="{file.filename}"'
    return response


def _previewable(request: HttpRequest, report_id: int) -> Report:
    """The report, if the user may preview it: view permission, and for a report with SQL
    sections the right to have them run (reports.permissions)."""
    _require_view(request, Report)
    report = get_object_or_404(Report, pk=report_id)
    if not may_build_report(request.user, report):
        raise PermissionDenied(RUN_SQL_REFUSED.format("preview a report that has SQL sections"))
    return report


def report_preview(request: HttpRequest, report_id: int) -> HttpResponse:
    """Start a preview of the report as it would be sent on a day (?date=YYYY-MM-DD, default
    today) and go to its page; sends nothing. A worker builds it (reports.previews)."""
    report = _previewable(request, report_id)
    today = timezone.now().astimezone(report.zone).date()
    try:
        day = date.fromisoformat(request.GET["date"]) if request.GET.get("date") else today
    except ValueError:
        return HttpResponse("date: use the form YYYY-MM-DD.", status=400, content_type="text/plain")
    if abs(day - today) > PREVIEW_REACH:
        return HttpResponse(f"date: {day.isoformat()} is more than a century from today; preview a day nearer to it.",
                            status=400, content_type="text/plain")
    preview, created = preview_request(report=report, user=request.user, day=day)
    if created:
        transaction.on_commit(lambda: _preview_send(preview))
    return redirect("admin:reports_report_preview_page", report.pk, preview.pk)


def _preview_send(preview: ReportPreview) -> None:
    try:
        report_preview_send(preview)
    except BROKER_ERRORS as error:
        preview_not_sent(preview=preview, error=error)


def report_preview_page(request: HttpRequest, report_id: int, preview_id: int) -> HttpResponse:
    """The preview's email once a worker built it; until then a page that looks again every
    few seconds, and says so when no worker answers. Only for the staff member who asked."""
    report = _previewable(request, report_id)
    preview = ReportPreview.objects.filter(pk=preview_id, report=report, requested_by=request.user).first()
    if preview is None:
        return _preview_status(report, None, "This preview is gone: a newer preview of the report replaced it, or "
                                             "it was removed by its retention. Open Preview now again.", status=404)
    if preview.status == ReportPreview.Status.READY:
        return _page_under_policy(preview.page)
    if preview.status == ReportPreview.Status.FAILED:
        return _preview_status(report, preview, f"The preview could not be built: {preview.error}")
    gave_up = preview.gave_up_because(now=timezone.now())
    if gave_up:
        return _preview_status(report, preview, gave_up)
    waiting = (f"{preview.get_status_display()} since {preview.requested_at:%H:%M:%S} UTC. This page looks again "
               f"every {PREVIEW_REFRESH_SECONDS} seconds and shows the email once it is built.")
    return _preview_status(report, preview, waiting, refresh=True, status=202)


def _preview_status(report: Report, preview: ReportPreview | None, message: str, *, refresh: bool = False,
                    status: int = 200) -> HttpResponse:
    return _page_under_policy(render_to_string("reports/preview_status.html", {
        "report": report, "preview": preview, "message": message,
        "refresh_seconds": PREVIEW_REFRESH_SECONDS if refresh else None,
    }), status=status)
