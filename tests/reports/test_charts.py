"""Charts draw every label as written: query data and typed names are never read as matplotlib math."""

from datetime import UTC, datetime

import pytest

from reports.charts import chart_png
from reports.models import ReportRun
from reports.services import report_deliver
from tests.reports.conftest import report_with

pytestmark = pytest.mark.django_db

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
# As math, "$$" did not parse (ValueError) and deep nesting overflowed the parser's stack (RecursionError).
NESTED = "$" + "{" * 500 + "x" + "}" * 500 + "$"


def test_dollar_signs_in_labels_names_and_values_still_give_the_chart(smtp_server):
    query = f"""SELECT '$$' AS "price in $", 3 AS "$visits$" UNION ALL SELECT '{NESTED}', 5"""
    section = {"name": "Costs in $ and $$", "query": query, "chart": "bar", "chart_x": "price in $",
               "chart_y": "$visits$"}
    report = report_with(sql=[section], recipients="ana@example.com")

    run = report_deliver(report=report, slot=SLOT)

    assert (run.status, run.error) == (ReportRun.Status.OK, "")
    (chart,) = run.files.filter(kind="chart")
    assert bytes(chart.content).startswith(b"\x89PNG")
    (message,) = smtp_server.to("ana@example.com")
    assert any(part.get_content_type() == "image/png" for part in message.walk())


def test_a_label_between_dollar_signs_keeps_its_spaces():
    # Read as math, "$5 and $7" drew as "5and7": the same picture as the title without spaces.
    def chart_titled(title: str) -> bytes:
        return chart_png(kind="bar", columns=["day", "visits"], rows=[("mon", 3)], x="day", y="visits", title=title)

    assert chart_titled("costs $5 and $7") != chart_titled("costs $5and$7")
