"""Reports go through a real SMTP server on loopback; the tests read what arrived."""

import csv
import io
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from reports import delivery, tasks
from reports.models import Report, ReportDelivery, ReportRun
from reports.services import report_delete, report_deliver
from reports.tasks import DeliveriesFailed, report_send
from scheduler.messages import RUN_HEADER, SCHEDULED_FOR_HEADER
from scheduler.models import ScheduleRun
from tests.builders import ledger_run
from tests.mail import SmtpServer
from tests.reports.conftest import chart_section, report_with

pytestmark = pytest.mark.django_db

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def deliver_from_beat(report, slot=SLOT, *, ledger: bool = True):
    """What a worker does with the message beat sends for the report's schedule at `slot`.

    Without the ledger the run id is left out, as if the ledger had not recognised a second
    delivery: the report's own once-per-recipient rule is then all that stands in the way.
    """
    if not ledger:
        return report_send.apply(kwargs={"report_id": report.pk}, headers={SCHEDULED_FOR_HEADER: slot.isoformat()})
    run = ledger_run(report.schedule, slot, status="sent")
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
    assert message["Subject"] == "Visits: Sunday 2026-03-01"  # the previous day, a new report's period
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
    # Every recipient got it, and the ledger still shows the run did not fully succeed.
    ledger = ScheduleRun.objects.get()
    assert ledger.status == "failed" and "partial: Section 'Broken' failed" in ledger.error


def test_it_delivers_once_after_the_mail_server_comes_back(smtp_port, monkeypatch):
    report = report_with(sql=[chart_section()], recipients="ana@example.com")
    server = SmtpServer(smtp_port)
    waits = []

    def server_back_during_the_first_wait(attempt: int) -> float:
        # Down for the first attempt; it comes back while delivery waits to try again.
        if not waits:
            server.start()
        waits.append(attempt)
        return 0.0

    monkeypatch.setattr(tasks, "backoff_seconds", server_back_during_the_first_wait)
    try:
        deliver_from_beat(report)
    finally:
        server.stop()

    (only,) = ReportDelivery.objects.all()
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
    monkeypatch.setattr(report_send, "max_retries", 1)
    smtp_server.rcpt_replies = {"ana@example.com": ["452 4.2.2 Mailbox full"] * 2}
    report = report_with(sql=[chart_section()], recipients="ana@example.com bo@example.com")
    deliver_from_beat(report)
    run = ReportRun.objects.get()
    ana = run.deliveries.get(recipient="ana@example.com")
    assert (ana.status, ana.attempts, ana.last_error) == ("failed", 2, "452 4.2.2 Mailbox full")

    report_deliver(report=report, slot=SLOT)

    assert [len(smtp_server.to(a)) for a in ("ana@example.com", "bo@example.com")] == [1, 1]
    sent = run.deliveries.get(recipient="ana@example.com")
    # The reply of the failed tries no longer describes a copy that went out.
    assert (sent.status, sent.last_error) == ("sent", "")


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



def test_a_delivery_left_sending_by_a_killed_worker_is_sent_by_the_next_run(smtp_server):
    report = report_with(sql=[chart_section()], recipients="ana@example.com bo@example.com")
    run = report_deliver(report=report, slot=SLOT)
    # As a worker killed mid-send leaves it: claimed 20 minutes ago, never finished.
    run.deliveries.filter(recipient="bo@example.com").update(
        status="sending", claimed_at=timezone.now() - timedelta(minutes=20),
        claimed_until=timezone.now() - timedelta(minutes=10), sent_at=None)
    smtp_server.received.clear()

    deliver_from_beat(report)

    assert [address for address, _ in smtp_server.received] == ["bo@example.com"]
    assert run.deliveries.get(recipient="bo@example.com").status == "sent"
    assert ScheduleRun.objects.get().status == "succeeded"


def test_a_delivery_being_sent_right_now_is_left_alone_and_the_ledger_says_it_was_not_sent(smtp_server):
    report = report_with(sql=[chart_section()], recipients="ana@example.com bo@example.com")
    run = report_deliver(report=report, slot=SLOT)
    run.deliveries.filter(recipient="bo@example.com").update(
        status="sending", claimed_at=timezone.now() - timedelta(minutes=1),
        claimed_until=timezone.now() + timedelta(minutes=9))
    smtp_server.received.clear()

    result = deliver_from_beat(report)

    assert smtp_server.received == []
    assert isinstance(result.result, DeliveriesFailed)
    assert "bo@example.com: sending" in ScheduleRun.objects.get().error


def test_an_exception_mid_way_leaves_the_recipients_not_reached_pending_and_fails_the_ledger(
        smtp_server, monkeypatch):
    report = report_with(sql=[chart_section()], recipients="a@example.com b@example.com c@example.com")
    build = delivery.email_message

    def broken_for_b(run, recipient):
        if recipient == "b@example.com":
            raise RuntimeError("the worker's soft time limit")
        return build(run, recipient)

    monkeypatch.setattr(delivery, "email_message", broken_for_b)
    result = deliver_from_beat(report)

    statuses = dict(ReportDelivery.objects.values_list("recipient", "status"))
    assert statuses == {"a@example.com": "sent", "b@example.com": "pending", "c@example.com": "pending"}
    ledger = ScheduleRun.objects.get()
    assert isinstance(result.result, RuntimeError) and ledger.status == "failed"
    assert "the worker's soft time limit" in ledger.error

    monkeypatch.setattr(delivery, "email_message", build)
    deliver_from_beat(report, ledger=False)
    assert sorted(address for address, _ in smtp_server.received) == ["a@example.com", "b@example.com", "c@example.com"]


def test_a_disabled_or_deleted_report_is_skipped_with_the_reason_in_the_ledger(smtp_server):
    report = report_with(sql=[chart_section()])
    Report.objects.filter(pk=report.pk).update(enabled=False)
    deliver_from_beat(report)
    run = ScheduleRun.objects.get()
    assert (run.status, run.reason, run.output) == ("skipped", "report 'Visits' is disabled",
                                                    {"skipped": "report 'Visits' is disabled"})

    result = report_send.apply(kwargs={"report_id": 999_999})
    assert result.result == {"skipped": "report 999999 was deleted"}
    assert smtp_server.received == [] and not ReportRun.objects.exists()


def test_deleting_a_report_deletes_its_schedule():
    report = report_with(sql=[chart_section()])
    schedule_id = report.schedule_id
    report_delete(report=report)
    assert not PeriodicTask.objects.filter(pk=schedule_id).exists()


def mime_tree(part) -> list | str:
    if part.is_multipart():
        return [part.get_content_type(), *(mime_tree(child) for child in part.iter_parts())]
    return part.get_content_type()


def test_the_chart_is_related_to_the_html_and_the_csv_is_attached_beside_them(smtp_server):
    report = report_with(sql=[chart_section()], recipients="ana@example.com")
    report_deliver(report=report, slot=SLOT)

    (message,) = smtp_server.to("ana@example.com")
    assert mime_tree(message) == [
        "multipart/mixed",
        ["multipart/related", ["multipart/alternative", "text/plain", "text/html"], "image/png"],
        "text/csv",
    ]
    related = next(message.iter_parts())
    assert related.get_content_type() == "multipart/related"
    (image,) = [part for part in related.iter_parts() if part.get_content_type() == "image/png"]
    html = related.get_body(preferencelist=("html",)).get_content()
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    assert message.get_body(preferencelist=("plain",)).get_content().startswith("Visits")


def test_a_report_named_with_a_line_break_before_names_were_checked_is_sent_with_a_one_line_subject(smtp_server):
    # Written past the form (as rows saved before the name's validator existed): the header
    # check refused every attempt and the delivery stayed "sending".
    report = report_with(name="Visits\r\nBcc: eve@example.com", recipients="ana@example.com")

    report_deliver(report=report, slot=SLOT)

    (message,) = smtp_server.to("ana@example.com")
    assert message["Subject"] == "Visits Bcc: eve@example.com: Sunday 2026-03-01"
    assert smtp_server.to("eve@example.com") == []
    assert list(ReportDelivery.objects.values_list("status", flat=True)) == ["sent"]


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted(smtp_server):
    query = "SELECT '=HYPERLINK(\"http://x\")' AS a, '+1' AS b, '-2' AS c, '@SUM(A1)' AS d, 'fine' AS e"
    report = report_with(sql=[{"name": "Cells", "query": query}], recipients="ana@example.com")
    report_deliver(report=report, slot=SLOT)

    rows = list(csv.reader(io.StringIO(parts_of(smtp_server.to("ana@example.com")[0])["csv"]["01-cells.csv"])))
    assert rows[1] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "fine"]


def test_the_query_text_stays_out_of_the_email():
    report = report_with(sql=[chart_section()], recipients="ana@example.com")
    run = report_deliver(report=report, slot=SLOT)
    assert "UNION ALL" not in run.html and "UNION ALL" not in run.text


def test_the_largest_table_is_cut_first_and_a_small_one_stays_whole(smtp_server, monkeypatch):
    from reports import rendering

    monkeypatch.setattr(rendering, "HTML_LIMIT", 6_000)
    many = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
            "SELECT i, 'row number ' || i AS label FROM n")
    report = report_with(sql=[{"name": "Many", "query": many}, chart_section()], recipients="ana@example.com")
    report_deliver(report=report, slot=SLOT)

    html = parts_of(smtp_server.to("ana@example.com")[0])["html"]
    assert "of 3000 rows; every row is in the attached 01-many.csv" in html
    assert "Showing 50 of 3000" not in html and ">wed</td>" in html
    assert len(html.encode()) <= 6_000


def test_an_email_still_over_the_html_cap_is_not_sent_and_the_run_says_why(smtp_server, monkeypatch):
    from reports import rendering

    monkeypatch.setattr(rendering, "HTML_LIMIT", 500)
    report = report_with(sql=[chart_section()], recipients="ana@example.com")
    result = deliver_from_beat(report)

    assert smtp_server.received == []
    run = ReportRun.objects.get()
    assert run.status == ReportRun.Status.FAILED and "EmailTooLarge" in run.error
    assert "over the 500-byte limit" in ScheduleRun.objects.get().error and result.failed()


def test_over_the_total_attachment_budget_the_largest_csv_is_left_out_and_named(smtp_server, monkeypatch):
    from reports import rendering

    big = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
           "SELECT i, 'row number ' || i AS label FROM n")
    monkeypatch.setattr(rendering, "ATTACHMENTS_BUDGET", 20_000)
    report = report_with(sql=[{"name": "Big", "query": big}, chart_section()], recipients="ana@example.com")
    report_deliver(report=report, slot=SLOT)

    parts = parts_of(smtp_server.to("ana@example.com")[0])
    assert list(parts["csv"]) == ["02-visits-per-day.csv"]
    assert "01-big.csv" in parts["html"] and "admin" in parts["html"]
