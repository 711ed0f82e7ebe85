import email
import email.policy
import socket
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from reports import delivery, sources
from reports.models import Report, ReportSection
from reports.services import report_schedule_sync


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MailHandler:
    """What the loopback SMTP server received, and the replies it is told to give."""

    received: list = field(default_factory=list)
    # recipient -> list of replies to give to RCPT TO, one per attempt ("" accepts).
    rcpt_replies: dict = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.rcpt_replies.get(address.lower())
        if replies:
            reply = replies.pop(0)
            if reply:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        for recipient in envelope.rcpt_tos:
            self.received.append((recipient, message))
        return "250 Message accepted for delivery"

    def to(self, recipient: str) -> list:
        return [message for address, message in self.received if address == recipient]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = MailHandler()
        self.controller = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_port(settings) -> int:
    port = free_port()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    return port


@pytest.fixture
def smtp_server(smtp_port):
    """A real SMTP server on loopback (aiosmtpd); Django's SMTP backend points at it."""
    server = SmtpServer(smtp_port)
    server.start()
    yield server.handler
    server.stop()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Retries wait milliseconds instead of seconds; the schedule of waits is the same."""
    monkeypatch.setattr(delivery, "BACKOFF_BASE_SECONDS", 0.05)


@pytest.fixture(autouse=True)
def data_source_connections_closed():
    """Pooled data-source connections end with the test, so the test database can be dropped."""
    yield
    sources.data_source_connections_close()


COUNTS_BY_DAY = "SELECT 'mon' AS day, 3 AS visits UNION ALL SELECT 'tue', 5 UNION ALL SELECT 'wed', 4"


def report_with(*, name: str = "Visits", recipients: str = "ana@example.com, bo@example.com",
                summary: bool = False, sql: list[dict] | None = None, **fields) -> Report:
    report = Report.objects.create(name=name, recipients=recipients, timezone=fields.pop("timezone", "UTC"), **fields)
    position = 0
    if summary:
        position += 1
        ReportSection.objects.create(report=report, position=position, name="Operations summary",
                                     kind=ReportSection.Kind.OPERATIONS_SUMMARY)
    for section in sql or []:
        position += 1
        ReportSection.objects.create(report=report, position=position, kind=ReportSection.Kind.SQL, **section)
    report_schedule_sync(report=report)
    return report


def chart_section(**overrides) -> dict:
    return {"name": "Visits per day", "query": COUNTS_BY_DAY, "chart": "bar", "chart_x": "day",
            "chart_y": "visits", **overrides}
