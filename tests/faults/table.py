"""The fault suite's table: one row per scenario, printed at the end of the session.

A plugin that tests/conftest.py registers, not hooks in tests/faults/conftest.py: under
pytest-xdist the scenarios run in worker processes, and the process that prints the summary
collects nothing, so it never loads a conftest.py below tests/. The rows reach it on the
scenarios' test reports.
"""

import pytest

from tests.faults.tally import ROWS, Tally

TABLE_LINES = "fault suite table"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    counted = len(ROWS)
    try:
        return (yield)
    finally:
        item.user_properties.extend((TABLE_LINES, table_lines(row)) for row in ROWS[counted:])


def table_lines(row: Tally) -> list[str]:
    return [f"{row.row()}  (settled in {row.settle_seconds:.0f} s)",
            *(f"    {n} x {example}" for example, n in sorted(row.examples.items())),
            *(f"    {problem}" for problem in row.problems[:10])]


def pytest_terminal_summary(terminalreporter) -> None:
    reports = sorted((report for reports in terminalreporter.stats.values() for report in reports
                      if getattr(report, "when", None) == "call"), key=lambda report: report.nodeid)
    rows = [lines for report in reports for name, lines in report.user_properties if name == TABLE_LINES]
    if not rows:
        return
    terminalreporter.section("fault suite: slots per scenario")
    terminalreporter.write_line(Tally.HEADER)
    for lines in rows:
        for line in lines:
            terminalreporter.write_line(line)
