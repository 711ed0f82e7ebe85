"""Each section of a report turned into tables and charts for one covered period.

A section that fails becomes a section with its error: the rest of the email goes out.
"""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils.text import slugify

from cleanup.selectors import cleanup_totals
from reports import selectors
from reports.charts import ChartError, chart_png
from reports.models import Report, ReportSection, period_text
from reports.sources import QueryFailed, QueryRefused, QueryResult, QueryTimedOut, query_run
from scheduler.models import ScheduleRun
from scraping.selectors import scraping_totals
from shared.display import last_line

logger = logging.getLogger(__name__)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[tuple]
    note: str = ""
    # Set for data tables: the CSV attached beside the email.
    csv_filename: str = ""


@dataclass
class ChartImage:
    filename: str
    content_id: str
    png: bytes


@dataclass
class SectionOutput:
    name: str
    kind: str
    tables: list[Table] = field(default_factory=list)
    charts: list[ChartImage] = field(default_factory=list)
    query: str = ""
    error: str = ""


@dataclass(frozen=True)
class CoveredPeriod:
    """What the run for one slot reads: [start, end) in UTC (Report.period_for), shown in `zone`."""

    kind: str
    # The run's day (ReportRun.covered_day), which names it in the archive.
    day: date
    zone: ZoneInfo
    start: datetime
    end: datetime

    @classmethod
    def of(cls, report: Report, slot: datetime) -> "CoveredPeriod":
        return cls(report.covered_period, report.run_day(slot), report.zone, *report.period_for(slot))

    @property
    def title(self) -> str:
        """How the email's subject names the period."""
        start, end = self.start.astimezone(self.zone), self.end.astimezone(self.zone)
        if self.kind == Report.Period.LAST_24_HOURS:
            return f"24 hours to {end:%A %Y-%m-%d %H:%M}"
        if self.kind == Report.Period.PREVIOUS_WEEK:
            return f"week of {start:%A %Y-%m-%d}"
        return f"{start:%A %Y-%m-%d}"

    @property
    def text(self) -> str:
        return period_text(self.start, self.end, self.zone)

    @property
    def within_one_day(self) -> bool:
        last = self.end - timedelta(microseconds=1)  # the end is excluded: a day ends at the next midnight
        return self.start.astimezone(self.zone).date() == last.astimezone(self.zone).date()


def section_build(section: ReportSection, *, covered: CoveredPeriod, position: int) -> SectionOutput:
    output = SectionOutput(name=section.name, kind=section.kind)
    try:
        if section.kind == ReportSection.Kind.OPERATIONS_SUMMARY:
            output.tables = operations_summary_tables(covered)
        else:
            _sql_section_fill(output, section, position=position)
    except (QueryRefused, QueryTimedOut, QueryFailed, ChartError) as error:
        output.error = str(error)
    except Exception as error:
        logger.exception("section %r of report %r failed", section.name, section.report.name)
        output.error = f"{type(error).__name__}: {error}"
    return output


def _sql_section_fill(output: SectionOutput, section: ReportSection, *, position: int) -> None:
    output.query = section.query
    result = query_run(source=section.data_source or "default", query=section.query,
                       timeout_seconds=section.timeout_seconds, row_limit=section.row_limit,
                       byte_limit=section.byte_limit)
    stem = f"{position:02d}-{slugify(section.name) or 'section'}"
    output.tables = [Table(section.name, result.columns, result.rows, note=_cut_note(result),
                           csv_filename=f"{stem}.csv")]
    if section.chart != ReportSection.Chart.NONE:
        png = chart_png(kind=section.chart, columns=result.columns, rows=result.rows,
                        x=section.chart_x, y=section.chart_y, title=section.name)
        output.charts = [ChartImage(filename=f"{stem}.png", content_id=f"chart-{stem}@reports", png=png)]


def _cut_note(result: QueryResult) -> str:
    """What the row and byte limits left out of a section's result, as the email says it."""
    kept = result.kept
    notes = []
    if kept.over_row_limit:
        notes.append(f"The result was cut at the row limit of {kept.row_limit} rows.")
    if kept.over_byte_limit:
        cut = (f"Rows after row {len(kept.rows):,} were not read: the values kept reached" if kept.rows
               else "No row was kept: the first row's values alone are over")
        notes.append(f"{cut} the section's limit of {kept.byte_limit:,} bytes.")
    if kept.shortened:
        columns = "; ".join(f"{result.columns[position]} in {_row_numbers(rows)}"
                            for position, rows in sorted(kept.shortened.items()))
        notes.append(f"Values over {kept.cell_bytes:,} bytes were shortened to that size (in the CSV each ends "
                     f"with \"… [cut from N bytes]\"): {columns}.")
    return " ".join(notes)


def _row_numbers(numbers: list[int], *, most: int = 5) -> str:
    """E.g. "rows 1-100, 102": the first `most` runs of consecutive numbers, then how many more rows."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    text = ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}" for run in runs[:most])
    left = sum(len(run) for run in runs[most:])
    return ("rows " if len(numbers) > 1 else "row ") + text + (f" and {left} more" if left else "")


def operations_summary_tables(covered: CoveredPeriod) -> list[Table]:
    window = {"start": covered.start, "end": covered.end}
    outcome_names = [ScheduleRun.Status(status).label.lower() for status in selectors.OUTCOME_COLUMNS]
    outcomes = Table("Runs by outcome", ["schedule", "runs", *outcome_names], [
        (row["schedule_name"], row["total"], *(row[status] for status in selectors.OUTCOME_COLUMNS))
        for row in selectors.schedule_outcomes(**window)
    ])
    failures = Table("Failures", ["schedule", "due", "outcome", "error"], [
        (run.schedule_name, _local(run.scheduled_for, covered), run.get_status_display(),
         last_line(run.error or run.reason))
        for run in selectors.failed_runs(**window)
    ])
    slowest = Table("Slowest runs", ["schedule", "due", "seconds"], [
        (run.schedule_name, _local(run.scheduled_for, covered), f"{run.took.total_seconds():.1f}")
        for run in selectors.slowest_runs(**window)
    ])
    cleanup = Table("Cleanup", ["target", "runs", "rows deleted", "stopped on budget", "failed"], [
        (row["target"], row["runs"], row["deleted"] or 0, row["budget_stops"], row["failures"])
        for row in cleanup_totals(**window)
    ])
    scraping = Table("Scraping", ["source", "fetches", "by outcome", "changes raised", "waiting for review"], [
        (row["source"], row["fetches"],
         ", ".join(f"{outcome.replace('_', ' ')} {count}" for outcome, count in sorted(row["outcomes"].items())),
         row["raised"], row["pending"])
        for row in scraping_totals(**window)
    ])
    for table, when_empty in ((outcomes, "No schedule was due in this period."),
                              (failures, "No run failed or was missed."),
                              (slowest, "No run finished."), (cleanup, "No cleanup ran."),
                              (scraping, "No source was fetched and no change waits for review.")):
        table.note = table.note or ("" if table.rows else when_empty)
    return [outcomes, failures, slowest, cleanup, scraping]


def _local(moment: datetime, covered: CoveredPeriod) -> str:
    # Within a week the weekday tells the days apart.
    return moment.astimezone(covered.zone).strftime("%H:%M" if covered.within_one_day else "%a %H:%M")
