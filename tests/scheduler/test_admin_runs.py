"""The run ledger in the admin: what a person reviews, and a list that never counts every run."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_results.models import TaskResult

from scheduler.models import ScheduleRun
from shared.admin_pages import CappedCountPaginator
from tests.builders import interval_task, ledger_run, ledger_runs

pytestmark = pytest.mark.django_db

LEDGER_URL = "/admin/scheduler/schedulerun/"
NOON = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
HOURLY = timedelta(hours=1)


def rows(page: str) -> list[str]:
    body = page.split('id="result_list"')[1].split("</tbody>")[0].split("<tbody>")[1]
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in re.findall(r"<tr.*?</tr>", body, re.S)]


def test_the_ledger_lists_each_runs_slot_outcome_start_duration_and_worker(staff_client):
    report = interval_task("Morning report", HOURLY)
    ledger_run(report, NOON, status="succeeded", kind="catch_up", started_at=NOON + timedelta(seconds=2),
               finished_at=NOON + timedelta(seconds=3.5), worker="celery@web-1")
    ledger_run(report, NOON + timedelta(hours=1), status="missed",
               reason="Not sent within the starting deadline of 60 s (beat reached it 3600 s late: beat was stopped).")

    listed = rows(staff_client.get(LEDGER_URL).content.decode())

    assert listed[0] == "2031-03-04 13:00:00 Morning report Missed Not sent within the starting deadline o… - - -"
    assert listed[1] == "2031-03-04 12:00:00 Morning report Succeeded catch-up - 12:00:02, 1.5 s celery@web-1 -"


def test_the_ledger_links_a_run_to_its_task_result_when_there_is_one(staff_client):
    report = interval_task("Morning report", HOURLY)
    with_result = ledger_run(report, NOON, status="succeeded")
    ledger_run(report, NOON - timedelta(hours=1), status="sent")
    result = TaskResult.objects.create(task_id=with_result.task_id, status="SUCCESS")

    page = staff_client.get(LEDGER_URL).content.decode()

    assert page.count(f'href="/admin/django_celery_results/taskresult/{result.pk}/change/"') == 1
    assert rows(page)[1].endswith("-")


def test_the_ledger_filters_by_schedule_status_and_kind(staff_client):
    report, heartbeat = interval_task("Morning report", HOURLY), interval_task("Heartbeat", HOURLY)
    ledger_run(report, NOON, status="failed", worker="celery@one")
    ledger_run(report, NOON - timedelta(hours=1), status="succeeded", worker="celery@two")
    ledger_run(heartbeat, NOON, status="failed", worker="celery@three")

    filters = staff_client.get(LEDGER_URL).content.decode().split('id="changelist-filter"')[1]
    for name in ("Failed", "Manual"):
        assert f">{name}</a>" in filters

    narrowed = staff_client.get(LEDGER_URL, {"schedule": report.pk, "status": "failed", "kind": "scheduled"})
    assert [row.split()[-2] for row in rows(narrowed.content.decode())] == ["celery@one"]


def test_the_schedule_filter_offers_only_the_schedules_whose_name_holds_the_typed_text(staff_client):
    # At 10,000 schedules a list of every one made each ledger page 686 KB.
    for number in range(25):
        interval_task(f"Export {number:02d}", HOURLY)
    interval_task("Not run yet", HOURLY)

    untouched = staff_client.get(LEDGER_URL).content.decode().split('id="changelist-filter"')[1]
    typed = staff_client.get(LEDGER_URL, {"schedule_name": "EXPORT 1"}).content.decode()

    assert "Export" not in untouched and "Not run yet" not in untouched
    assert re.findall(r">(Export \d\d)</a>", typed.split('id="changelist-filter"')[1]) == [
        f"Export {number}" for number in range(10, 20)]
    assert 'value="EXPORT 1"' in typed


def test_the_ledger_searches_by_part_of_a_schedule_name_also_under_its_old_name(staff_client):
    report, heartbeat = interval_task("Morning report", HOURLY), interval_task("Heartbeat", HOURLY)
    ledger_run(report, NOON, worker="celery@one")
    ledger_run(heartbeat, NOON, worker="celery@two")
    ledger_run(None, NOON - HOURLY, schedule_name="Old digest", worker="celery@three")  # its schedule is gone
    report.name = "Morning summary"  # renamed: its runs recorded the old name
    report.save()

    def found(term: str) -> list[str]:
        page = staff_client.get(LEDGER_URL, {"q": term}).content.decode()
        return [row.split()[-2] for row in rows(page)] if 'id="result_list"' in page else []

    assert found("SUMMARY") == ["celery@one"]
    assert found("Old digest") == ["celery@three"]
    assert found("digest") == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's choice is PostgreSQL's")
def test_on_postgresql_the_kind_filter_reads_an_index_of_the_runs_that_are_not_scheduled(staff_client):
    # Without it, the filter's capped count read every run to find the few manual ones.
    report = interval_task("Morning report", HOURLY)
    ledger_runs(report, (NOON - timedelta(minutes=minute) for minute in range(50)))

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = ScheduleRun.objects.filter(kind="manual").order_by("-scheduled_for").query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "scheduler_run_unscheduled" in plan, plan


@pytest.mark.parametrize("value", ["abc", "1.5", "²", "99999999999999999999999"])
def test_a_schedule_filter_that_is_no_schedules_id_lists_no_runs(staff_client, value):
    ledger_run(interval_task("Morning report", HOURLY), NOON, status="succeeded")

    response = staff_client.get(LEDGER_URL, {"schedule": value})

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="result_list"' not in page
    assert re.search(r'id="ledger-count">\s*0 schedule runs', page)


def test_the_ledger_page_runs_few_queries_and_never_counts_every_run(staff_client, django_assert_max_num_queries,
                                                                     monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 150)
    report = interval_task("Morning report", HOURLY)
    ledger_runs(report, (NOON - timedelta(minutes=minute) for minute in range(400)), claimed_at=NOON)

    with django_assert_max_num_queries(8), CaptureQueriesContext(connection) as queries:
        page = staff_client.get(LEDGER_URL, {"schedule": report.pk, "status": "succeeded"}).content.decode()

    counts = [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()]
    assert counts and all("LIMIT 151" in sql for sql in counts), counts
    assert "150+ schedule runs: showing the newest 150" in page
    assert len(rows(page)) == 100


def test_a_ledger_of_a_few_runs_says_how_many(staff_client):
    ledger_run(interval_task("Morning report", HOURLY), NOON)

    assert "1 schedule run\n" in staff_client.get(LEDGER_URL).content.decode()


def test_the_run_page_shows_every_field_the_traceback_and_the_output(staff_client):
    run = ledger_run(
        interval_task("Morning report", HOURLY), NOON, status="failed", took=125, worker="celery@web-1",
        claimed_by="beat-host:42", error='Traceback (most recent call last):\n  File "x.py"\nValueError: <bad> input',
        output={"sent": 3, "to": ["a@example.com"]},
    )

    page = staff_client.get(f"{LEDGER_URL}{run.pk}/change/").content.decode()

    assert "Traceback (most recent call last):\n  File &quot;x.py&quot;\nValueError: &lt;bad&gt; input</pre>" in page
    assert '{\n  &quot;sent&quot;: 3,\n  &quot;to&quot;: [\n    &quot;a@example.com&quot;\n  ]\n}</pre>' in page
    for shown in ("beat-host:42", "celery@web-1", "2031-03-04 12:02:05 UTC", "2 min 5 s", run.task_id, "Failed"):
        assert shown in page


def test_a_run_cannot_be_edited_or_added_by_hand(staff_client):
    run = ledger_run(interval_task("Morning report", HOURLY), NOON, status="succeeded")

    assert staff_client.post(f"{LEDGER_URL}{run.pk}/change/", {"status": "failed"}).status_code == 403
    assert staff_client.get(f"{LEDGER_URL}add/").status_code == 403
    assert ScheduleRun.objects.get(pk=run.pk).status == "succeeded"
