"""The reports issue's "done when" with real processes: beat sends a report's scheduled run, a
worker builds it and emails each recipient once, through an SMTP server on loopback, with the
chart inline and the CSV attached; the run ledger and the report's archive both say so.
"""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from reports.models import Report, ReportRun, ReportSection
from reports.services import report_schedule_sync
from scheduler.models import BeatHeartbeat, ScheduleRun
from tests.builders import due_once_at
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.waiting import wait_until
from tests.mail import SmtpServer, free_port

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = ("ana@example.com", "bo@example.com")
# On the app's own database (data source "default"): always at least the report's own schedule.
SCHEDULES_PER_TASK = (
    "SELECT task, count(*) AS schedules FROM django_celery_beat_periodictask GROUP BY task ORDER BY task"
)


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback (aiosmtpd), for the worker process to send to."""
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


def report_with_summary_and_chart() -> Report:
    report = Report.objects.create(name="Operations and schedules", recipients=", ".join(RECIPIENTS),
                                   timezone="UTC")
    ReportSection.objects.create(report=report, position=1, kind=ReportSection.Kind.OPERATIONS_SUMMARY,
                                 name="Operations summary")
    ReportSection.objects.create(report=report, position=2, kind=ReportSection.Kind.SQL, name="Schedules per task",
                                 query=SCHEDULES_PER_TASK, chart=ReportSection.Chart.BAR, chart_x="task",
                                 chart_y="schedules")
    report_schedule_sync(report=report)
    return report


def parts_of(message) -> dict:
    found = {"images": {}, "attachments": {}}
    for part in message.walk():
        if part.get_content_type() == "text/html":
            found["html"] = part.get_content()
        elif part.get_content_type() == "image/png":
            found["images"][part["Content-ID"].strip("<>")] = (part.get_content_disposition(), part.get_content())
        elif part.get_filename():
            found["attachments"][part.get_filename()] = part.get_content()
    return found


def test_the_scheduled_run_emails_each_recipient_once_with_the_chart_inline_and_the_csv_attached(
    start_process, app_env, smtp_server, tmp_path
):
    env = {**app_env, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_server.port)}
    start_process("worker", worker_argv("-Q", "default,reports"), **env)
    start_process("beat", celery_argv("beat", "--pidfile", str(tmp_path / "beat.pid")), **env)
    wait_until(lambda: BeatHeartbeat.objects.exists(), timeout=30, what="beat looping")

    report = report_with_summary_and_chart()
    due_once_at(report.schedule, timezone.now() + timedelta(seconds=2))
    runs = ScheduleRun.objects.filter(schedule=report.schedule)
    wait_until(lambda: runs.filter(status__in=ScheduleRun.FINISHED).exists(), timeout=40,
               what=lambda: f"the report's run to finish (ledger: {list(runs.values_list('status', flat=True))})")
    wait_until(lambda: len(smtp_server.handler.received) >= len(RECIPIENTS), timeout=10, what="both emails")

    [ledger_run] = runs
    assert ledger_run.status == ScheduleRun.Status.SUCCEEDED, ledger_run.error
    archived = ReportRun.objects.get(report=report)
    assert archived.status == ReportRun.Status.OK, archived.error
    assert archived.scheduled_for == ledger_run.scheduled_for
    assert archived.covered_day == ledger_run.scheduled_for.date()
    assert sorted(archived.deliveries.values_list("recipient", "status")) == [(r, "sent") for r in RECIPIENTS]
    # Celery stores the result after the task returned, a moment after the ledger's outcome.
    result = wait_until(lambda: TaskResult.objects.filter(task_id=ledger_run.task_id, status="SUCCESS").first(),
                        timeout=30, what="the task's result")
    assert result.status == "SUCCESS" and json.loads(result.result)["sent"] == len(RECIPIENTS)

    for recipient in RECIPIENTS:
        [message] = smtp_server.handler.to(recipient)
        # A new report covers the previous day: the subject names that day.
        assert message["Subject"] == f"Operations and schedules: {archived.period_start:%A %Y-%m-%d}"
        parts = parts_of(message)
        assert "Runs by outcome" in parts["html"] and len(parts["html"].encode()) < 100_000
        [content_id] = re.findall(r'src="cid:([^"]+)"', parts["html"])
        disposition, png = parts["images"][content_id]
        assert disposition == "inline" and png.startswith(b"\x89PNG")
        rows = list(csv.reader(io.StringIO(parts["attachments"]["02-schedules-per-task.csv"])))
        assert rows[0] == ["task", "schedules"] and ["reports.tasks.report_send", "1"] in rows[1:]
