"""`manage.py send_report NAME [--date YYYY-MM-DD]`: outside checks call it; keep it stable."""

import os
from datetime import date
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from reports.models import ReportRun
from reports.services import reports_seed
from tests.reports.conftest import chart_section, report_with

pytestmark = pytest.mark.django_db


def send_report(*args: str) -> str:
    out = StringIO()
    call_command("send_report", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_sends_a_day_and_a_second_call_sends_nobody_twice(smtp_server):
    report_with(sql=[chart_section()])
    first = send_report("Visits", "--date", "2026-02-27")
    assert "Report 'Visits' for 2026-02-27: OK" in first and "ana@example.com" in first and "sent" in first
    # Due on the 27th, it covers the day before.
    assert smtp_server.to("ana@example.com")[0]["Subject"] == "Visits: Thursday 2026-02-26"

    second = send_report("Visits", "--date", "2026-02-27")
    assert "already sent before" in second
    assert [len(smtp_server.to(a)) for a in ("ana@example.com", "bo@example.com")] == [1, 1]
    assert ReportRun.objects.get().covered_day == date(2026, 2, 27)


def test_a_recipient_added_later_gets_the_days_report_on_a_rerun(smtp_server):
    report = report_with(sql=[chart_section()], recipients="ana@example.com")
    send_report("Visits", "--date", "2026-02-27")
    report.recipients = "ana@example.com\ncy@example.com"
    report.save()
    send_report("Visits", "--date", "2026-02-27")
    assert [len(smtp_server.to(a)) for a in ("ana@example.com", "cy@example.com")] == [1, 1]


@pytest.mark.parametrize("args, message", [
    (["Nope"], "No report named 'Nope'; reports: 'Visits'."),
    (["Visits", "--date", "27.02.2026"], "--date: '27.02.2026' is not a date in the form YYYY-MM-DD."),
])
def test_bad_input_exits_with_a_clear_message(args, message):
    report_with(sql=[chart_section()])
    with pytest.raises(CommandError, match=message.replace(".", r"\.")):
        send_report(*args)


def test_it_fails_naming_the_recipients_not_reached(smtp_server):
    smtp_server.rcpt_replies = {"bo@example.com": ["550 5.1.1 No such user"]}
    report_with(sql=[chart_section()])
    with pytest.raises(CommandError, match="not delivered to: bo@example.com"):
        send_report("Visits", "--date", "2026-02-27")
    assert len(smtp_server.to("ana@example.com")) == 1


def test_a_report_without_recipients_is_refused():
    reports_seed()
    with pytest.raises(CommandError, match="has no recipients"):
        send_report("Daily operations")


@pytest.mark.django_db(transaction=True)
def test_it_runs_as_a_real_command_and_exits_non_zero_on_failure(smtp_server, smtp_port, tmp_path):
    from tests.conftest import run_manage, subprocess_env
    from tests.e2e.conftest import database_url_of_this_test

    report_with(sql=[chart_section()])
    # On PostgreSQL, the reader role the SQL section reads through (tests/conftest.py).
    env = subprocess_env(DATABASE_URL=database_url_of_this_test(), DATA_DIR=str(tmp_path),
                         EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp_port),
                         REPORT_SOURCE_DEFAULT_URL=os.environ.get("REPORT_SOURCE_DEFAULT_URL"))

    sent = run_manage("send_report", "Visits", "--date", "2026-02-27", env=env)
    assert sent.returncode == 0, sent.stderr
    assert "Report 'Visits' for 2026-02-27: OK" in sent.stdout
    assert len(smtp_server.to("ana@example.com")) == 1

    refused = run_manage("send_report", "No such report", env=env)
    assert refused.returncode != 0
    assert "No report named 'No such report'" in refused.stderr
