"""(f, g) A report due while its mail server is down, and while it greylists: the tries go
through Celery's retry (reports.tasks.report_send), so the worker keeps running the probe's
schedules meanwhile, every recipient gets the email once, and the report's run ends succeeded,
or failed with the server's reason, never left sent.

Scaled down by ten through MAIL_RETRY_BASE_SECONDS (3 s: tries 3-6, 9-18, 21-42 and 45-90 s
after the first, where the product's 30 s gives 30-60 s ... 7.5-15 min): an outage spanning
three tries (at least 9 s here, 90 s in real time: "down for longer than a minute"), and a
greylisting of 30 s for greylisting's usual five minutes. FAULTS_REAL_TIME=1 runs the
greylisting at the product's own five minutes and waits (about 4 to 15 minutes).
"""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from reports.delivery import ATTEMPTS
from reports.models import ReportDelivery, ReportRun
from scheduler.models import ScheduleRun
from tests.builders import due_once_at
from tests.e2e.waiting import wait_until
from tests.faults.tally import report_notes
from tests.mail import GREYLISTED, SmtpServer, free_port
from tests.reports.conftest import report_with

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = ("ana@example.com", "bo@example.com")
SCALED_RETRY_BASE_SECONDS = 3
REAL_TIME = pytest.mark.skipif(not os.environ.get("FAULTS_REAL_TIME"), reason=(
    "greylisting for the real five minutes takes 4 to 15 minutes: set FAULTS_REAL_TIME=1 to run it "
    "(the scaled run, 30 s at a tenth of the waits, always runs)"))


@pytest.fixture
def smtp():
    """A loopback SMTP server, down (its port closed) until the test starts it."""
    server = SmtpServer(free_port())
    yield server
    server.stop()


@pytest.fixture
def fault_env(fault_env, smtp) -> dict:
    # A retry waits in the worker as a message with an ETA, unacknowledged: Redis hands it out
    # again once the visibility timeout passes. The product's (an hour) outlasts its longest
    # wait (8 minutes); so must the scaled one outlast the scaled wait (48 s), not the suite's 8 s.
    return {**fault_env, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp.port),
            "MAIL_RETRY_BASE_SECONDS": str(SCALED_RETRY_BASE_SECONDS), "BROKER_VISIBILITY_TIMEOUT": "60"}


def report_due(campaign, **env: str | None):
    """Probe schedules and a report (an operations summary, two recipients) due once in a few
    seconds, with a worker for both queues and a beat, given `env` besides the suite's (None:
    the product's default)."""
    campaign.env = {**campaign.env, **env}
    campaign.schedules(2, every=2, seconds=0.5)
    campaign.worker("worker", "-Q", "default,reports")
    campaign.beat("beat")
    report = report_with(summary=True, recipients=", ".join(RECIPIENTS))
    due_once_at(report.schedule, timezone.now() + timedelta(seconds=3))
    # Settled and counted with the probe's schedules; its executions are the emails received.
    campaign.names.append(report.schedule.name)
    wait_until(lambda: len(deliveries(report)) == len(RECIPIENTS), timeout=30, what="the report's first try")
    return report


def count(campaign, scenario: str, report, smtp, *, timeout: float):
    """Once the report's run has finished (the probe's schedules running all along), settle and
    count every slot."""
    ledger = ScheduleRun.objects.filter(schedule=report.schedule)
    wait_until(lambda: ledger.filter(status__in=ScheduleRun.FINISHED).exists(), timeout=timeout,
               what=lambda: f"the report's run to finish ({deliveries(report)})")
    settled = campaign.settle(timeout=30)
    received = {recipient: len(smtp.handler.to(recipient)) for recipient in RECIPIENTS}
    return campaign.count(scenario, settled=settled, notes=lambda rows: report_notes(
        rows, schedule=report.schedule.name, received=received))


def deliveries(report) -> dict[str, tuple]:
    return {d.recipient: (d.status, d.attempts, d.last_error)
            for d in ReportDelivery.objects.filter(run__report=report)}


def test_smtp_down_for_three_tries_then_back(campaign, smtp):
    report = report_due(campaign)
    wait_until(lambda: all(attempts >= 3 for _s, attempts, _e in deliveries(report).values()), timeout=45,
               what=lambda: f"three refused tries of each delivery ({deliveries(report)})")
    smtp.start()

    result = count(campaign, "f1. SMTP down for three tries, then back", report, smtp, timeout=60)
    assert result.holds(), result.report()
    assert [len(smtp.handler.to(recipient)) for recipient in RECIPIENTS] == [1, 1]
    # Sent on the fourth try, and the refused connections of the first three are not its error.
    assert deliveries(report) == {recipient: ("sent", 4, "") for recipient in RECIPIENTS}
    assert ReportRun.objects.get(report=report).status == ReportRun.Status.OK
    assert ScheduleRun.objects.get(schedule=report.schedule).status == ScheduleRun.Status.SUCCEEDED


def test_smtp_down_past_the_last_try(campaign, smtp):
    # Down all along: a shorter base (the last try 7.5-15 s after the first) reaches the last try
    # sooner, and the outcome is the same.
    report = report_due(campaign, MAIL_RETRY_BASE_SECONDS="0.5")

    result = count(campaign, "f2. SMTP down past the last try", report, smtp, timeout=60)
    assert result.holds(), result.report()
    assert result.reasons == {"failed": 1}
    refused = {recipient: (status, attempts, error.split(":")[0])
               for recipient, (status, attempts, error) in deliveries(report).items()}
    assert refused == {recipient: ("failed", ATTEMPTS, "ConnectionRefusedError") for recipient in RECIPIENTS}
    ledger = ScheduleRun.objects.get(schedule=report.schedule)
    assert ledger.status == ScheduleRun.Status.FAILED
    assert all(f"{recipient}: ConnectionRefusedError" in ledger.error for recipient in RECIPIENTS), ledger.error


@pytest.mark.parametrize("greylist_seconds, retry_base, timeout", [
    pytest.param(30, str(SCALED_RETRY_BASE_SECONDS), 100, id="scaled"),
    # The product's own waits and visibility timeout (MAIL_RETRY_BASE_SECONDS and
    # BROKER_VISIBILITY_TIMEOUT unset).
    pytest.param(300, None, 960, id="real-time", marks=[REAL_TIME, pytest.mark.timeout(1200)]),
])
def test_smtp_greylisting(campaign, smtp, greylist_seconds, retry_base, timeout):
    smtp.handler.greylist_seconds = greylist_seconds
    smtp.start()
    real_time = retry_base is None
    report = report_due(campaign, MAIL_RETRY_BASE_SECONDS=retry_base,
                        **({"BROKER_VISIBILITY_TIMEOUT": None} if real_time else {}))

    scenario = f"g. SMTP greylisting for {greylist_seconds} s" + (" (real time)" if real_time else "")
    result = count(campaign, scenario, report, smtp, timeout=timeout)
    assert result.holds(), result.report()
    assert [len(smtp.handler.to(recipient)) for recipient in RECIPIENTS] == [1, 1]
    sent = deliveries(report)
    assert {recipient: (status, error) for recipient, (status, _a, error) in sent.items()} == {
        recipient: ("sent", "") for recipient in RECIPIENTS}
    # Every try before the greylist's end was refused, the one after it accepted: the fourth or
    # the fifth, as the greylist outlasts the first three waits and the four waits outlast it.
    for recipient, (_status, attempts, _error) in sent.items():
        assert attempts in (4, 5) and smtp.handler.refused.count((recipient, GREYLISTED)) == attempts - 1
    assert ScheduleRun.objects.get(schedule=report.schedule).status == ScheduleRun.Status.SUCCEEDED
