"""A report's sections as an email: HTML with inlined CSS under HTML_LIMIT, a text part, charts
as inline images referenced by Content-ID, a CSV per data table; and back into a browser page.
"""

import base64
import csv
import io
import re
from dataclasses import dataclass, field

import css_inline
from django.template.loader import render_to_string
from django.utils.text import Truncator

from reports.models import Report, ReportFile
from reports.sections import CoveredPeriod, SectionOutput, Table

# Gmail clips a message whose HTML passes about 102 KB; stay under that with room to spare.
HTML_LIMIT = 100_000
# Larger files are left out of the email (many servers refuse messages over 10-25 MB); the
# archive in the admin keeps them. Both limits count the base64 size, as sent.
ATTACHMENT_LIMIT = 5 * 1024 * 1024
ATTACHMENTS_BUDGET = 10 * 1024 * 1024
# Rows shown per table: the table showing the most is cut to the next step until the HTML fits.
ROWS_SHOWN_STEPS = (50, 20, 5, 0)
CELL_CHARACTERS = 200
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class EmailTooLarge(RuntimeError):
    """Even with every table cut to nothing the HTML is over HTML_LIMIT: nothing is sent."""


@dataclass
class RenderedFile:
    kind: str
    filename: str
    content_type: str
    content: bytes
    content_id: str = ""
    attached: bool = True


@dataclass
class RenderedEmail:
    subject: str
    html: str
    text: str
    files: list[RenderedFile] = field(default_factory=list)
    failed_sections: list[SectionOutput] = field(default_factory=list)

    @property
    def error(self) -> str:
        return "\n".join(f"Section {output.name!r} failed: {output.error}" for output in self.failed_sections)


def email_render(*, report: Report, covered: CoveredPeriod, outputs: list[SectionOutput]) -> RenderedEmail:
    files = _files_of(outputs)
    left_out = [file for file in files if not file.attached]
    subject = f"{report.name}: {covered.title}"
    failed = [output for output in outputs if output.error]
    tables = [table for output in outputs for table in output.tables]
    shown = {id(table): ROWS_SHOWN_STEPS[0] for table in tables}
    while True:
        context = {
            "report": report, "covered": covered, "subject": subject, "failed": failed, "left_out": left_out,
            "sections": [_section_context(output, shown, left_out) for output in outputs],
            "attachment_limit": ATTACHMENT_LIMIT,
        }
        html = css_inline.inline(render_to_string("reports/email.html", context))
        if len(html.encode()) <= HTML_LIMIT:
            break
        cut = _table_to_cut(tables, shown)
        if cut is None:
            raise EmailTooLarge(f"The email's HTML is {len(html.encode()):,} bytes with every table cut, over the "
                                f"{HTML_LIMIT:,}-byte limit; nothing was sent. See the run in the admin archive.")
        shown[id(cut)] = ROWS_SHOWN_STEPS[ROWS_SHOWN_STEPS.index(shown[id(cut)]) + 1]
    text = render_to_string("reports/email.txt", context)
    return RenderedEmail(subject=subject, html=html, text=text, files=files, failed_sections=failed)


def _table_to_cut(tables: list[Table], shown: dict[int, int]) -> Table | None:
    """The table showing the most rows; tables whose CSV has every row before those without one."""
    candidates = [table for table in tables if min(shown[id(table)], len(table.rows)) > 0]
    if not candidates:
        return None
    return max(candidates, key=lambda table: (bool(table.csv_filename), min(shown[id(table)], len(table.rows))))


def encoded_size(content: bytes) -> int:
    """Bytes on the wire as base64 in 76-character lines with CRLF."""
    encoded = 4 * -(-len(content) // 3)
    return encoded + 2 * -(-encoded // 76)


def _files_of(outputs: list[SectionOutput]) -> list[RenderedFile]:
    files = []
    for output in outputs:
        for chart in output.charts:
            files.append(RenderedFile(ReportFile.Kind.CHART, chart.filename, "image/png", chart.png, chart.content_id))
        for table in output.tables:
            if table.csv_filename:
                content = table_csv(table.columns, table.rows)
                files.append(RenderedFile(ReportFile.Kind.CSV, table.csv_filename, "text/csv", content,
                                          attached=encoded_size(content) <= ATTACHMENT_LIMIT))
    # Over the total budget, the largest CSVs go first (charts stay: the HTML shows them).
    total = sum(encoded_size(file.content) for file in files if file.attached)
    for file in sorted(files, key=lambda file: len(file.content), reverse=True):
        if total <= ATTACHMENTS_BUDGET:
            break
        if file.attached and file.kind == ReportFile.Kind.CSV:
            file.attached = False
            total -= encoded_size(file.content)
    return files


def table_csv(columns: list[str], rows: list[tuple]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_safe_cell(column) for column in columns])
    writer.writerows([_safe_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode()


def _safe_cell(value):
    # A leading quote makes a spreadsheet show the text instead of running it (OWASP's advice).
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _section_context(output: SectionOutput, shown: dict[int, int], left_out: list[RenderedFile]) -> dict:
    left_out_names = {file.filename for file in left_out}
    tables = []
    for table in output.tables:
        rows = [[_cell(value) for value in row] for row in table.rows[:shown[id(table)]]]
        cut = len(table.rows) - len(rows)
        # An operations table has no CSV: its rows come from the admin's run and cleanup history.
        where = "in the admin's run and cleanup history for this period"
        if table.csv_filename:
            where = ("in the admin archive" if table.csv_filename in left_out_names
                     else f"in the attached {table.csv_filename}")
        tables.append({"title": table.title, "columns": table.columns, "rows": rows, "note": table.note,
                       "cut": cut, "total": len(table.rows), "where": where, "csv": table.csv_filename,
                       "csv_left_out": table.csv_filename in left_out_names})
    return {"output": output, "tables": tables, "charts": output.charts}


def _cell(value) -> str:
    return "" if value is None else Truncator(str(value)).chars(CELL_CHARACTERS)


CID_REFERENCE = re.compile(r'cid:([^"\'\s)>]+)')


def html_with_embedded_images(html: str, images: dict[str, tuple[str, bytes]]) -> str:
    """The email's HTML for a browser: each cid: image (content id -> (type, bytes)) as a data URL."""

    def data_url(match: re.Match) -> str:
        image = images.get(match.group(1))
        if image is None:
            return match.group(0)
        content_type, content = image
        return f"data:{content_type};base64,{base64.b64encode(content).decode()}"

    return CID_REFERENCE.sub(data_url, html)
