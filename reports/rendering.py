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
from reports.sections import CoveredDay, SectionOutput

# Gmail clips a message whose HTML passes about 102 KB; stay under that with room to spare.
HTML_LIMIT = 100_000
# Larger files are left out of the email (many servers refuse messages over 10-25 MB); the
# archive in the admin keeps them.
ATTACHMENT_LIMIT = 5 * 1024 * 1024
# Rows shown per table, tried in turn until the HTML fits; every row is in the CSV.
ROWS_SHOWN_STEPS = (50, 20, 5, 0)
CELL_CHARACTERS = 200


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


def email_render(*, report: Report, covered: CoveredDay, outputs: list[SectionOutput]) -> RenderedEmail:
    files = _files_of(outputs)
    left_out = [file for file in files if not file.attached]
    subject = f"{report.name}: {covered.day:%A %Y-%m-%d}"
    failed = [output for output in outputs if output.error]
    for rows_shown in ROWS_SHOWN_STEPS:
        context = {
            "report": report, "covered": covered, "subject": subject, "failed": failed, "left_out": left_out,
            "sections": [_section_context(output, rows_shown, left_out) for output in outputs],
            "attachment_limit": ATTACHMENT_LIMIT,
        }
        html = css_inline.inline(render_to_string("reports/email.html", context))
        if len(html.encode()) <= HTML_LIMIT:
            break
    text = render_to_string("reports/email.txt", context)
    return RenderedEmail(subject=subject, html=html, text=text, files=files, failed_sections=failed)


def _files_of(outputs: list[SectionOutput]) -> list[RenderedFile]:
    files = []
    for output in outputs:
        for chart in output.charts:
            files.append(RenderedFile(ReportFile.Kind.CHART, chart.filename, "image/png", chart.png, chart.content_id))
        for table in output.tables:
            if table.csv_filename:
                content = table_csv(table.columns, table.rows)
                files.append(RenderedFile(ReportFile.Kind.CSV, table.csv_filename, "text/csv", content,
                                          attached=len(content) <= ATTACHMENT_LIMIT))
    return files


def table_csv(columns: list[str], rows: list[tuple]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _section_context(output: SectionOutput, rows_shown: int, left_out: list[RenderedFile]) -> dict:
    left_out_names = {file.filename for file in left_out}
    tables = []
    for table in output.tables:
        shown = [[_cell(value) for value in row] for row in table.rows[:rows_shown]]
        cut = len(table.rows) - len(shown)
        where = ""
        if table.csv_filename:
            where = ("in the admin archive" if table.csv_filename in left_out_names
                     else f"in the attached {table.csv_filename}")
        tables.append({"title": table.title, "columns": table.columns, "rows": shown, "note": table.note,
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
