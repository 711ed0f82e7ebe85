import pytest

from reports import delivery, sources
from reports.models import Report, ReportSection
from reports.services import report_schedule_sync


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
