"""SQL sections keep a bounded result, whatever the values weigh: each value cut to REPORT_CELL_BYTES,
rows read while the kept values fit the section's byte limit, and the email says what was cut.

What the worker holds is measured by what was kept: the sizes of the kept values.
"""

import csv
import html
import io
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.urls import reverse

from reports.models import ReportRun, ReportSection
from reports.result_budget import cut_mark
from reports.services import report_deliver
from reports.sources import query_run
from tests.reports.conftest import report_with
from tests.reports.test_admin import report_form, sql_section_form
from tests.reports.test_sending import parts_of

pytestmark = pytest.mark.django_db(transaction=True)

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def numbered(count: int, *columns: str) -> str:
    """SELECT n (1 to `count`) and `columns`, expressions of n, on either database."""
    if connection.vendor == "postgresql":
        return f"SELECT {', '.join(['n', *columns])} FROM generate_series(1, {count}) AS n"
    return (f"WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < {count}) "
            f"SELECT {', '.join(['n', *columns])} FROM numbers")


def text_of(characters: int, character: str = "x") -> str:
    """A SQL expression for `characters` times `character`."""
    if connection.vendor == "postgresql":
        return f"repeat('{character}', {characters})"
    # hex() of a zero blob is two '0' characters per byte.
    return f"replace(hex(zeroblob({characters // 2})), '0', '{character}')"


def binary_of(size: int) -> str:
    return f"decode(repeat('ab', {size}), 'hex')" if connection.vendor == "postgresql" else f"randomblob({size})"


def kept_bytes(rows: list[tuple]) -> int:
    return sum(len(value) if isinstance(value, bytes) else len(str(value).encode()) for row in rows for value in row)


def run(query: str, **options):
    return query_run(source="default", query=query, timeout_seconds=60, row_limit=options.pop("row_limit", 10_000),
                     **options)


def test_a_hundred_values_of_5_mb_are_kept_at_10_kb_each_and_marked():
    result = run(numbered(100, f"{text_of(5_000_000)} AS payload"))

    # 500 MB was read; about 1 MB is held.
    assert kept_bytes(result.rows) <= 100 * (10_000 + 40) < 2_000_000
    assert [n for n, _ in result.rows] == list(range(1, 101)) and not result.truncated
    for _, payload in result.rows:
        assert payload == "x" * 10_000 + cut_mark(5_000_000) == "x" * 10_000 + "… [cut from 5,000,000 bytes]"
    assert result.kept.shortened == {1: list(range(1, 101))} and not result.kept.over_byte_limit


def test_rows_past_the_sections_byte_limit_are_not_read():
    result = run(numbered(1_000, f"{text_of(5_000)} AS body"))

    assert kept_bytes(result.rows) <= 2_000_000
    assert [n for n, _ in result.rows] == list(range(1, 2_000_000 // (5_000 + 8) + 1))
    assert result.kept.over_byte_limit and not result.truncated and not result.kept.shortened


def test_a_section_sets_its_own_byte_limit():
    result = run(numbered(1_000, f"{text_of(5_000)} AS body"), byte_limit=50_000)
    assert len(result.rows) == 50_000 // (5_000 + 8) and result.kept.over_byte_limit


def test_a_text_of_multibyte_characters_is_cut_at_a_character_and_counted_in_bytes():
    ((_, text),) = run(numbered(1, f"{text_of(6_000, 'é')} AS word")).rows
    assert text == "é" * 5_000 + "… [cut from 12,000 bytes]"


def test_binary_values_count_by_their_size_and_are_shown_shortened():
    (row,) = run(numbered(1, f"{binary_of(3_000_000)} AS big", f"{binary_of(4)} AS small")).rows
    _, big, small = row
    assert isinstance(small, bytes) and len(small) == 4
    assert big.startswith("b'") and big.endswith("'… [cut from 3,000,000 bytes]")
    assert len(big) <= 10_000 + len(cut_mark(3_000_000))


def test_the_email_says_which_values_were_shortened_and_which_rows_were_dropped(smtp_server):
    big_in_two = f"CASE WHEN n IN (2, 5) THEN {text_of(20_000, 'r')} ELSE 'short' END"
    sections = [
        {"name": "Payloads", "query": numbered(100, f"{text_of(5_000_000)} AS payload", f"{big_in_two} AS remark")},
        {"name": "Bodies", "query": numbered(1_000, f"{text_of(5_000)} AS body"), "byte_limit": 50_000},
    ]
    report = report_with(sql=sections, recipients="ana@example.com")

    run_ = report_deliver(report=report, slot=SLOT)

    assert (run_.status, run_.error) == (ReportRun.Status.OK, "")
    parts = parts_of(smtp_server.to("ana@example.com")[0])
    shortened = ('Values over 10,000 bytes were shortened to that size (in the CSV each ends with "… [cut from N '
                 'bytes]"): payload in rows 1-100; remark in rows 2, 5.')
    dropped = "Rows after row 9 were not read: the values kept reached the section's limit of 50,000 bytes."
    for note in (shortened, dropped):
        assert note in parts["text"]
        assert note in html.unescape(parts["html"])
    payloads = list(csv.reader(io.StringIO(parts["csv"]["01-payloads.csv"])))
    assert payloads[0] == ["n", "payload", "remark"] and len(payloads) == 101
    assert payloads[2][1] == "x" * 10_000 + "… [cut from 5,000,000 bytes]"
    assert payloads[2][2] == "r" * 10_000 + "… [cut from 20,000 bytes]" and payloads[3][2] == "short"
    assert len(list(csv.reader(io.StringIO(parts["csv"]["02-bodies.csv"])))) == 1 + 9


def test_a_section_gets_its_byte_limit_on_the_reports_page(staff_client):
    data = report_form(**sql_section_form(), **{"sql_sections-0-byte_limit": "50000"})
    assert staff_client.post(reverse("admin:reports_report_add"), data).status_code == 302
    assert ReportSection.objects.get(kind=ReportSection.Kind.SQL).byte_limit == 50_000


@pytest.mark.parametrize("byte_limit, message", [
    ("9999", "Ensure this value is greater than or equal to 10000."),
    ("20000001", "Ensure this value is less than or equal to 20000000."),
])
def test_a_byte_limit_out_of_range_is_refused_naming_the_field(staff_client, byte_limit, message):
    data = report_form(**sql_section_form(), **{"sql_sections-0-byte_limit": byte_limit})
    response = staff_client.post(reverse("admin:reports_report_add"), data)
    (sections,) = [formset for formset in response.context["inline_admin_formsets"]
                   if formset.formset.prefix == "sql_sections"]
    assert sections.formset.errors == [{"byte_limit": [message]}]
    assert not ReportSection.objects.exists()
