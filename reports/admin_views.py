"""Staff-only pages of the reports admin: the archived email in the browser, its files, a preview.

Each is wrapped by `admin_site.admin_view` (staff login) and also checks the model's view
permission. The email's HTML is served with a policy that lets it load nothing but its own
embedded images: it holds query results, which should never run or fetch anything here.
"""

from datetime import date, timedelta

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone

from reports.models import Report, ReportFile, ReportRun
from reports.rendering import html_with_embedded_images
from reports.services import report_render

EMAIL_PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# How far from today a preview may be: ?date=9999-12-31 answered 500 (finding the due time looks
# centuries ahead, past the last date Python has), and a day further off is a typing mistake.
PREVIEW_REACH = timedelta(days=36525)  # a century


def _require_view(request: HttpRequest, model) -> None:
    if not request.user.has_perm(f"reports.view_{model._meta.model_name}"):
        raise PermissionDenied


def _email_page(html: str, images: dict) -> HttpResponse:
    response = HttpResponse(html_with_embedded_images(html, images))
    response["Content-Security-Policy"] = EMAIL_PAGE_POLICY
    return response


def run_email(request: HttpRequest, run_id: int) -> HttpResponse:
    _require_view(request, ReportRun)
    run = get_object_or_404(ReportRun, pk=run_id)
    images = {file.content_id: (file.content_type, bytes(file.content))
              for file in run.files.filter(kind=ReportFile.Kind.CHART)}
    return _email_page(run.html, images)


def run_file(request: HttpRequest, run_id: int, file_id: int) -> HttpResponse:
    _require_view(request, ReportRun)
    file = get_object_or_404(ReportFile, pk=file_id, run_id=run_id)
    response = HttpResponse(bytes(file.content), content_type=file.content_type)
    response["Content-Disposition"] = f'attachment; filename="{file.filename}"'
    return response


def report_preview(request: HttpRequest, report_id: int) -> HttpResponse:
    """The report as it would be sent on a day (?date=YYYY-MM-DD, default today); sends and stores nothing."""
    _require_view(request, Report)
    report = get_object_or_404(Report, pk=report_id)
    today = timezone.now().astimezone(report.zone).date()
    try:
        day = date.fromisoformat(request.GET["date"]) if request.GET.get("date") else today
    except ValueError:
        return HttpResponse("date: use the form YYYY-MM-DD.", status=400, content_type="text/plain")
    if abs(day - today) > PREVIEW_REACH:
        return HttpResponse(f"date: {day.isoformat()} is more than a century from today; preview a day nearer to it.",
                            status=400, content_type="text/plain")
    rendered = report_render(report=report, slot=report.slot_on(day))
    images = {file.content_id: (file.content_type, file.content)
              for file in rendered.files if file.kind == ReportFile.Kind.CHART}
    return _email_page(rendered.html, images)
