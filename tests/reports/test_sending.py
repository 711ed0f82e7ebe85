"""Reports go through a real SMTP server on loopback; the tests read what arrived."""

import csv
import io
import re
import threading
import uuid
from datetime import UTC, datetime

import pytest

from reports import delivery
from reports.models import ReportDelivery, ReportRun
from reports.services import report_deliver
from reports.tasks import DeliveriesFailed, report_send
from scheduler.dispatch import RUN_HEADER, SCHEDULED_FOR_HEADER
from scheduler.models import ScheduleRun
from tests.reports.conftest import SmtpServer, chart_section, report_with

pytestmark = pytest.mark.django_db

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def deliver_from_beat(report, slot=SLOT, *, ledger: bool = True):
    """What a worker does with the message beat sends for the report's schedule at `slot`.

    Without the ledger the run id is left out, as if the ledger had not recognised a second
    delivery: the report's own once-per-recipient rule is then all that stands in the way.
    """
    if not ledger:
        return report_send.apply(kwargs={"report_id": report.pk}, headers={SCHEDULED_FOR_HEADER: slot.isoformat()})
    run = ScheduleRun.objects.create(
        schedule=report.schedule, schedule_name=report.schedule.name, task_name=report.schedule.task,
        scheduled_for=slot, task_id=str(uuid.uuid4()), claimed_by="beat", claimed_at=slot, status="sent",
    )
    headers = {RUN_HEADER: run.id, SCHEDULED_FOR_HEADER: slot.isoformat()}
    return report_send.apply(kwargs={"report_id": report.pk}, task_id=run.task_id, headers=headers)


def parts_of(message) -> dict:
    found = {"images": {}, "csv": {}}
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            found["text"] = part.get_content()
        elif part.get_content_type() == "text/html":
            found["html"] = part.get_content()
        elif part.get_content_type() == "image/png":
            found["images"][part["Content-ID"].strip("<>")] = part.get_content()
        elif part.get_filename():
            found["csv"][part.get_filename()] = part.get_content()
    return found


def test_it_emails_html_text_an_inline_chart_and_the_csv(smtp_server):
    report = report_with(summary=True, sql=[chart_section()])
    deliver_from_beat(report)

    (message,) = smtp_server.to("ana@example.com")
    assert message["Subject"] == "Visits: Monday 2026-03-02"
    parts = parts_of(message)
    assert "Visits per day" in parts["text"] and "tue | 5" in parts["text"]
    html = parts["html"]
    assert "<td" in html and 'style="' in html, "CSS is inlined"
    (content_id,) = re.findall(r'src="cid:([^"]+)"', html)
    assert parts["images"][content_id].startswith(b"\x89PNG")
    rows = list(csv.reader(io.StringIO(parts["csv"]["02-visits-per-day.csv"])))
    assert rows == [["day", "visits"], ["mon", "3"], ["tue", "5"], ["wed", "4"]]
    assert "Runs by outcome" in html and len(html.encode()) < 100_000
    assert len(smtp_server.to("bo@example.com")) == 1


def test_it_sends_each_recipient_once_when_the_task_runs_twice(smtp_server):
    report = report_with(sql=[chart_section()])
    deliver_from_beat(report)
    deliver_from_beat(report, ledger=False)  # the same slot's message, executed again

    assert [len(smtp_server.to(address)) for address in ("ana@example.com", "bo@example.com")] == [1, 1]
    run = ReportRun.objects.get(report=report)
    assert sorted(run.deliveries.values_list("status", flat=True)) == ["sent", "sent"]


@pytest.mark.django_db(transaction=True)
def test_two_executions_at_once_send_each_recipient_one_email(smtp_server):
    report = report_with(sql=[chart_section()], recipients="a@example.com b@example.com c@example.com d@example.com")
    errors = []

    def execute():
        try:
            report_deliver(report=report, slot=SLOT)
        except Exception as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)
        finally:
            from django.db import connection
            connection.close()

    threads = [threading.Thread(target=execute) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(address for address, _ in smtp_server.received) == [
        "a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    assert ReportRun.objects.filter(report=report).count() == 1


def test_a_failing_sql_section_still_sends_the_email_and_marks_the_run_partial(smtp_server):
    broken = {"name": "Broken", "query": "SELECT * FROM no_such_table"}
    report = report_with(summary=True, sql=[chart_section(), broken])
    deliver_from_beat(report)

    run = ReportRun.objects.get(report=report)
    assert run.status == ReportRun.Status.PARTIAL
    assert "Section 'Broken' failed" in run.error and "no_such_table" in run.error
    (message,) = smtp_server.to("ana@example.com")
    parts = parts_of(message)
    assert "1 section failed" in parts["html"] and "Broken" in parts["html"]
    assert "This section failed" in parts["text"]
    assert "02-visits-per-day.csv" in parts["csv"]
    assert ScheduleRun.objects.get().status == "succeeded"


def test_it_delivers_once_after_the_mail_server_comes_back(smtp_port):
    report = report_with(sql=[chart_section()], recipients="ana@example.com")
    server = SmtpServer(smtp_port)
    # Down for the first attempts: started from another thread after a while.
    later = threading.Timer(0.4, server.start)
    later.start()
    try:
        run = report_deliver(report=report, slot=SLOT)
    finally:
        later.join()
        server.stop()

    (only,) = run.deliveries.all()
    assert only.status == ReportDelivery.Status.SENT and only.attempts > 1
    assert len(server.handler.to("ana@example.com")) == 1


def test_a_temporary_refusal_is_retried_and_a_permanent_one_is_not(smtp_server):
    smtp_server.rcpt_replies = {
        "ana@example.com": ["451 4.3.0 Mailbox busy, try later"],
        "gone@example.com": ["550 5.1.1 No such user"],
    }
    report = report_with(sql=[chart_section()], recipients="ana@example.com gone@example.com bo@example.com")
    result = deliver_from_beat(report)

    deliveries = {d.recipient: d for d in ReportDelivery.objects.all()}
    assert (deliveries["ana@example.com"].status, deliveries["ana@example.com"].attempts) == ("sent", 2)
    gone = deliveries["gone@example.com"]
    assert (gone.status, gone.attempts) == ("failed", 1)
    assert gone.last_error == "550 5.1.1 No such user"
    assert [len(smtp_server.to(a)) for a in ("ana@example.com", "bo@example.com", "gone@example.com")] == [1, 1, 0]
    # The failure shows in the run ledger too, with the server's reply.
    assert isinstance(result.result, DeliveriesFailed)
    assert "gone@example.com: 550 5.1.1 No such user" in ScheduleRun.objects.get().error


def test_a_final_temporary_failure_keeps_the_servers_reply_and_a_later_run_sends_it(smtp_server, monkeypatch):
    monkeypatch.setattr(delivery, "ATTEMPTS", 2)
    smtp_server.rcpt_replies = {"ana@example.com": ["452 4.2.2 Mailbox full"] * 2}
    report = report_with(sql=[chart_section()], recipients="ana@example.com bo@example.com")
    run = report_deliver(report=report, slot=SLOT)
    ana = run.deliveries.get(recipient="ana@example.com")
    assert (ana.status, ana.attempts, ana.last_error) == ("failed", 2, "452 4.2.2 Mailbox full")

    report_deliver(report=report, slot=SLOT)

    assert [len(smtp_server.to(a)) for a in ("ana@example.com", "bo@example.com")] == [1, 1]
    assert run.deliveries.get(recipient="ana@example.com").status == "sent"


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    waits = [[delivery.backoff_seconds(attempt) for _ in range(200)] for attempt in (1, 3, 10)]
    assert max(waits[0]) <= delivery.BACKOFF_BASE_SECONDS * 2 < max(waits[1])
    assert max(waits[2]) <= delivery.BACKOFF_CAP_SECONDS
    assert len(set(waits[0])) > 100, "jittered, not fixed"


def test_an_oversized_csv_is_left_out_and_the_email_says_where_to_get_it(smtp_server, monkeypatch):
    from reports import rendering

    monkeypatch.setattr(rendering, "ATTACHMENT_LIMIT", 10)
    report = report_with(sql=[chart_section()], recipients="ana@example.com")
    run = report_deliver(report=report, slot=SLOT)

    parts = parts_of(smtp_server.to("ana@example.com")[0])
    assert parts["csv"] == {}
    assert "attachment limit: 01-visits-per-day.csv" in parts["html"]
    assert "Reports › Report runs › Visits for 2026-03-02" in parts["text"]
    stored = run.files.get(kind="csv")
    assert not stored.attached and bytes(stored.content).startswith(b"day,visits")


def test_a_long_table_is_cut_in_the_html_and_complete_in_the_csv(smtp_server):
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) " \
              "SELECT i, 'row number ' || i AS label FROM n"
    report = report_with(sql=[{"name": "Many", "query": numbers}], recipients="ana@example.com")
    report_deliver(report=report, slot=SLOT)

    parts = parts_of(smtp_server.to("ana@example.com")[0])
    assert "Showing 50 of 3000 rows" in parts["html"] and len(parts["html"].encode()) < 100_000
    assert len(parts["csv"]["01-many.csv"].splitlines()) == 3001

