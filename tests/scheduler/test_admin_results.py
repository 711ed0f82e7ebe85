"""The task results in the admin: which schedule, which state, which day, at a million rows.

The list pages by keyset (no count, the oldest page one index range away), its filters take
their choices from small tables, and its search is indexed unless the substring search is ticked.
"""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult

from scheduler.models import WorkerHeartbeat
from tests.builders import interval_task

pytestmark = pytest.mark.django_db

RESULTS_URL = "/admin/django_celery_results/taskresult/"
NOON = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
HOURLY = timedelta(hours=1)


def results(*rows: dict) -> list[TaskResult]:
    """Task results as a worker writes them; each row's date_done as given (auto_now ignored)."""
    made = TaskResult.objects.bulk_create(
        TaskResult(task_id=row.get("task_id", str(uuid.uuid4())), status=row.get("status", "SUCCESS"),
                   task_name=row.get("task_name", "scheduler.tasks.heartbeat"), worker=row.get("worker"),
                   periodic_task_name=row.get("schedule"), task_args=row.get("args", "()"), task_kwargs="{}")
        for row in rows)
    for result, row in zip(made, rows, strict=True):
        result.date_done = row.get("done", NOON)
    TaskResult.objects.bulk_update(made, ["date_done"])
    return made


def listed_ids(page: str) -> list[str]:
    """The short task ids of the rows shown, top to bottom."""
    if 'id="result_list"' not in page:
        return []
    body = page.split('id="result_list"')[1].split("</tbody>")[0]
    return re.findall(r'<td class="field-short_id">([^<]*)</td>', body)


def sidebar(page: str) -> str:
    return page.split('id="changelist-filter"')[1]


def link(page: str, name: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)" id="pager-{name}"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_the_list_pages_newest_first_through_every_result_once_and_back(staff_client):
    # 250 results, two by two done at the same moment: the pager breaks ties by id.
    made = results(*({"done": NOON - timedelta(minutes=n // 2)} for n in range(250)))
    newest_first = [result.task_id[:8] for result in sorted(made, key=lambda r: (r.date_done, r.pk), reverse=True)]

    first = staff_client.get(RESULTS_URL).content.decode()
    second = staff_client.get(RESULTS_URL + link(first, "older")).content.decode()
    third = staff_client.get(RESULTS_URL + link(second, "older")).content.decode()

    assert listed_ids(first) + listed_ids(second) + listed_ids(third) == newest_first
    assert link(first, "newer") is None and link(third, "older") is None
    oldest = staff_client.get(RESULTS_URL + link(first, "oldest")).content.decode()
    assert listed_ids(oldest) == newest_first[150:]
    assert listed_ids(staff_client.get(RESULTS_URL + link(oldest, "newer")).content.decode()) == newest_first[50:150]
    # Back at the top the page is whole again, not the 50 left above the position.
    assert listed_ids(staff_client.get(RESULTS_URL + link(second, "newer")).content.decode()) == newest_first[:100]
    assert "100 task results on this page, newest first" in first


def test_the_list_never_counts_the_results_nor_reads_their_distinct_values(staff_client):
    results(*({"done": NOON - timedelta(minutes=n), "schedule": f"Report {n % 3}", "worker": "celery@one"}
              for n in range(120)))

    with CaptureQueriesContext(connection) as queries:
        for query in ({}, {"status": "FAILURE"}, {"day": "2031-03-04"}, {"oldest": 1}, {"q": "Report 1"}):
            assert staff_client.get(RESULTS_URL, query).status_code == 200

    on_results = [query["sql"] for query in queries if "django_celery_results_taskresult" in query["sql"]]
    assert len(on_results) == 5, on_results  # one query per page: its rows
    assert not [sql for sql in on_results if "COUNT(" in sql.upper() or "DISTINCT" in sql.upper()]
    assert len(queries) <= 5 * 8


def test_a_search_for_a_task_id_or_its_first_characters_finds_that_result(staff_client):
    wanted, other = results({"task_id": "4f1c2a9e-0b7d-4c55-9e2f-6a1d3b8c7e10"}, {"task_id": "9e2f6a1d-aaaa-4c55"})

    by_id = staff_client.get(RESULTS_URL, {"q": wanted.task_id}).content.decode()
    by_start = staff_client.get(RESULTS_URL, {"q": "4f1c2a9e"}).content.decode()
    inside = staff_client.get(RESULTS_URL, {"q": "0b7d-4c55"}).content.decode()

    assert listed_ids(by_id) == listed_ids(by_start) == ["4f1c2a9e"]
    # From its start only: the middle of an id is no one's way to name a result.
    assert listed_ids(inside) == []


def test_the_substring_search_is_opted_into_and_finds_text_in_the_arguments_worker_and_names(staff_client):
    results({"task_id": "a0000001", "args": "('nightly-export',)"},
            {"task_id": "a0000002", "worker": "celery@export-host"},
            {"task_id": "a0000003", "task_name": "reports.tasks.export_send"},
            {"task_id": "a0000004", "schedule": "Weekly export"},
            {"task_id": "a0000005", "task_name": "scheduler.tasks.heartbeat"})

    indexed = staff_client.get(RESULTS_URL, {"q": "export"}).content.decode()
    anywhere = staff_client.get(RESULTS_URL, {"q": "EXPORT", "contains": "1"}).content.decode()

    assert listed_ids(indexed) == []
    assert sorted(listed_ids(anywhere)) == ["a0000001", "a0000002", "a0000003", "a0000004"]
    assert 'name="contains" value="1" id="search-contains" checked' in anywhere
    assert 'id="search-contains" checked' not in indexed


def test_a_search_by_part_of_a_schedule_name_or_a_task_name_finds_their_results(staff_client):
    interval_task("Morning report", HOURLY)
    results({"task_id": "b0000001", "schedule": "Morning report"},
            {"task_id": "b0000002", "schedule": "Evening digest"},  # a schedule deleted since: its exact name
            {"task_id": "b0000003", "schedule": "Heartbeat", "task_name": "reports.tasks.report_send"})

    def found(term: str) -> list[str]:
        return sorted(listed_ids(staff_client.get(RESULTS_URL, {"q": term}).content.decode()))

    assert found("morning") == ["b0000001"]
    assert found("Evening digest") == ["b0000002"]
    assert found("Evening") == []
    assert found("reports.tasks.report_send") == ["b0000003"]


def test_the_schedule_filter_shows_only_schedules_whose_name_holds_the_typed_text(staff_client):
    for number in range(30):
        interval_task(f"Export {number:02d}", HOURLY)
    backup = interval_task("Nightly backup", HOURLY)
    results({"task_id": "c0000001", "schedule": "Nightly backup"}, {"task_id": "c0000002", "schedule": "Export 01"})

    untouched = sidebar(staff_client.get(RESULTS_URL).content.decode())
    typed = sidebar(staff_client.get(RESULTS_URL, {"schedule_name": "export"}).content.decode())
    picked = staff_client.get(RESULTS_URL, {"schedule": backup.pk}).content.decode()

    assert "Export 00" not in untouched and "Nightly backup" not in untouched
    assert 'name="schedule_name"' in untouched
    shown = re.findall(r">(Export \d\d)</a>", typed)
    assert shown == [f"Export {number:02d}" for number in range(20)]
    assert "type more of it to narrow" in typed and "Nightly backup" not in typed
    assert listed_ids(picked) == ["c0000001"]
    assert '<li class="selected">\n    <a href="?schedule=' in sidebar(picked)


@pytest.mark.parametrize("value", ["abc", "1.5", "²", "99999999999999999999999", "424242"])
def test_a_schedule_filter_naming_no_schedule_lists_no_results(staff_client, value):
    results({"schedule": "Morning report"})

    page = staff_client.get(RESULTS_URL, {"schedule": value})

    assert page.status_code == 200
    assert listed_ids(page.content.decode()) == []


def test_the_state_day_task_and_worker_filters_narrow_the_list(staff_client):
    interval_task("Morning report", HOURLY, task="reports.tasks.report_send")
    WorkerHeartbeat.objects.create(worker="celery@two", first_beat_at=NOON, last_beat_at=NOON)
    today = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    results({"task_id": "d0000001", "status": "FAILURE", "done": today},
            {"task_id": "d0000002", "status": "SUCCESS", "done": today - timedelta(days=1), "worker": "celery@two"},
            {"task_id": "d0000003", "status": "FAILURE", "done": today - timedelta(days=3),
             "task_name": "reports.tasks.report_send"})

    def found(**query) -> list[str]:
        return sorted(listed_ids(staff_client.get(RESULTS_URL, query).content.decode()))

    page = staff_client.get(RESULTS_URL).content.decode()
    for choice in ("failure", "Today", "Yesterday", "Past 7 days", "reports.tasks.report_send", "celery@two"):
        assert f">{choice}</a>" in sidebar(page)
    assert found(status="FAILURE") == ["d0000001", "d0000003"]
    assert found(day="today") == ["d0000001"]
    assert found(day="yesterday") == ["d0000002"]
    assert found(day=f"{(today - timedelta(days=3)).date():%Y-%m-%d}", status="FAILURE") == ["d0000003"]
    assert found(day="7d") == ["d0000001", "d0000002", "d0000003"]
    assert found(day="not-a-day") == []
    assert found(task="reports.tasks.report_send") == ["d0000003"]
    assert found(worker="celery@two") == ["d0000002"]


def test_a_filter_or_search_starts_again_from_the_newest_results(staff_client):
    results(*({"done": NOON - timedelta(minutes=n), "status": "FAILURE" if n % 2 else "SUCCESS"} for n in range(150)))

    page = staff_client.get(RESULTS_URL + link(staff_client.get(RESULTS_URL).content.decode(), "older"))
    filters = sidebar(page.content.decode())

    assert 'href="?status=FAILURE"' in filters
    assert "before=" not in filters
    assert 'name="before"' not in page.content.decode().split('id="changelist-search"')[1].split("</form>")[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="trigram indexes are PostgreSQL's")
def test_on_postgresql_the_substring_search_can_be_answered_from_indexes(staff_client):
    results({"args": "('nightly-export',)"})
    request = RequestFactory().get(RESULTS_URL, {"contains": "1"})

    searched, _ = admin.site._registry[TaskResult].get_search_results(request, TaskResult.objects.all(), "export")

    with connection.cursor() as cursor:
        # What the rows' order needs aside: can any index find the text?
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = searched.order_by().query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    for column in ("task_name", "periodic_task_name", "worker", "task_args", "task_kwargs"):
        assert f"scheduler_result_{column}_trgm" in plan, plan
