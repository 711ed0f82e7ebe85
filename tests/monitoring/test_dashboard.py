"""The monitoring dashboard in the admin, read as a person reads it: the bars' tooltips, the numbers
under each chart, the workers and queues, against ledger rows and a real Redis."""

from datetime import UTC, datetime, timedelta

import lxml.html
import pytest
import redis
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.timezone import localtime

from monitoring import dashboard_queries
from monitoring.management.commands import evaluate
from monitoring.models import LedgerHour
from scheduler.models import ScheduleRun, WorkerHeartbeat
from tests.builders import interval_task, ledger_run, ledger_runs, unsaved_ledger_run
from tests.mail import free_port

pytestmark = pytest.mark.django_db

HOUR, MINUTE, SECOND = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)
URL = reverse("monitoring_dashboard")


@pytest.fixture
def now(monkeypatch) -> datetime:
    """The clock stopped at half past the current hour, so no slot below slips into the next hour
    while a test runs."""
    real = timezone.now()
    stopped = real.replace(minute=30, second=0, microsecond=0)
    monkeypatch.setattr(timezone, "now", lambda: stopped)
    return stopped


@pytest.fixture(autouse=True)
def broker(settings, redis_url) -> redis.Redis:
    settings.CELERY_BROKER_URL = redis_url
    client = redis.Redis.from_url(redis_url)
    yield client
    client.delete(*(queue.name for queue in settings.CELERY_TASK_QUEUES))


def page(client, **query) -> lxml.html.HtmlElement:
    response = client.get(URL, query)
    assert response.status_code == 200, response.content[:500]
    return lxml.html.fromstring(response.content.decode())


def texts(document, selector: str) -> list[str]:
    """The text of each element `selector` finds, its white space folded as a browser shows it."""
    return [" ".join(element.text_content().split()) for element in document.cssselect(selector)]


def hour_label(at: datetime) -> str:
    """How the page names the hour `at` falls in (its start, in the site's timezone)."""
    return f"{localtime(at.replace(minute=0, second=0, microsecond=0)):%a %d %b %H:%M %Z}"


def numbers(document, module: str) -> dict[str, list[str]]:
    """The table under a chart: each hour's cells by its name."""
    return {row.cssselect("td")[0].text_content(): [cell.text_content() for cell in row.cssselect("td")[1:]]
            for row in document.cssselect(f"#{module} details tbody tr")}


def test_it_counts_each_hours_runs_by_outcome(staff_client, now):
    task = interval_task("Import orders", MINUTE)
    two_hours_ago, an_hour_ago = now - 2 * HOUR, now - HOUR
    ledger_runs(task, [two_hours_ago + k * MINUTE for k in range(3)])
    ledger_run(task, two_hours_ago + 5 * MINUTE, status="failed")
    ledger_run(task, two_hours_ago + 6 * MINUTE, status="not_enqueued")
    ledger_runs(task, [an_hour_ago + k * MINUTE for k in range(2)], status="missed")
    ledger_run(task, an_hour_ago + 9 * MINUTE, status="skipped")
    ledger_run(task, now - MINUTE, status="running")
    ledger_run(task, now - 25 * HOUR)  # before the window

    document = page(staff_client)

    tooltips = texts(document, "#chart-runs g.bar > title")
    assert len(tooltips) == 24
    assert tooltips[-3:] == [
        f"{hour_label(two_hours_ago)}: 3 succeeded, 2 failed or not enqueued",
        f"{hour_label(an_hour_ago)}: 2 missed, 1 skipped",
        f"{hour_label(now)}: 1 claimed, sent or running",
    ]
    assert tooltips[0] == f"{hour_label(now - 23 * HOUR)}: no runs"
    assert numbers(document, "runs-per-hour")[hour_label(two_hours_ago)] == ["3", "2", "0", "0", "0"]
    assert texts(document, "#figure-succeeded .figure") == ["3"]
    assert texts(document, "#figure-failed .figure") == ["2"]
    assert len(document.cssselect("#chart-runs rect.segment")) == 5  # one per outcome in an hour


def test_the_7_days_window_has_a_bar_for_each_hour_and_counts_last_weeks_runs(staff_client, now):
    task = interval_task("Import orders", HOUR)
    ledger_run(task, now - 6 * 24 * HOUR)

    document = page(staff_client, window="7d")

    assert len(document.cssselect("#chart-runs g.bar")) == 7 * 24
    assert texts(document, "#dashboard-window [aria-current=page]") == ["Last 7 days"]
    assert texts(document, "#figure-succeeded .figure") == ["1"]
    assert texts(page(staff_client, window="24h"), "#figure-succeeded .figure") == ["0"]


def timed_run(task, slot: datetime, *, lag: float, wait: float | None) -> ScheduleRun:
    sent = slot + lag * SECOND
    started = None if wait is None else sent + wait * SECOND
    return unsaved_ledger_run(task, slot, status="running" if started else "sent", sent_at=sent, started_at=started)


def test_it_shows_the_p50_and_p95_of_dispatch_lag_and_queue_wait_per_hour(staff_client, now):
    task = interval_task("Import orders", MINUTE)
    busy_hour, quiet_hour = now - 3 * HOUR, now - HOUR
    # 20 runs started, lags 1..20 s and waits 0.1..2.0 s; 2 more sent, not started (lags 21, 22 s).
    runs = [timed_run(task, busy_hour + k * MINUTE, lag=k, wait=k / 10) for k in range(1, 21)]
    runs += [timed_run(task, busy_hour + k * MINUTE, lag=k, wait=None) for k in (21, 22)]
    runs.append(timed_run(task, quiet_hour, lag=0.25, wait=0.04))
    ScheduleRun.objects.bulk_create(runs)

    table = numbers(page(staff_client), "lag-and-wait")

    # Nearest rank: lag p50 the 11th of 22, p95 the 21st; wait p50 the 10th of 20, p95 the 19th.
    assert table[hour_label(busy_hour)] == ["22", "11 s", "21 s", "20", "1.0 s", "1.9 s"]
    assert table[hour_label(quiet_hour)] == ["1", "250 ms", "250 ms", "1", "40 ms", "40 ms"]
    assert table[hour_label(now)] == ["0", "", "", "0", "", ""]


def finished_run(task, slot: datetime, *, lag: float, wait: float) -> ScheduleRun:
    run = timed_run(task, slot, lag=lag, wait=wait)
    run.status, run.finished_at = "succeeded", run.started_at + SECOND
    return run


def test_a_settled_hour_is_summarised_once_and_made_again_when_its_runs_change(staff_client, now):
    task = interval_task("Import orders", MINUTE)
    settled_hour = now - 3 * HOUR
    ScheduleRun.objects.bulk_create([finished_run(task, settled_hour + k * MINUTE, lag=k, wait=k / 10)
                                     for k in range(1, 5)])

    assert numbers(page(staff_client), "lag-and-wait")[hour_label(settled_hour)] == [
        "4", "2.0 s", "4.0 s", "4", "200 ms", "400 ms"]
    summary = LedgerHour.objects.get(hour=settled_hour.replace(minute=0))
    assert (summary.runs, summary.lag_p50, summary.wait_p95) == (4, 2.0, 0.4)

    # The next page reads the summary, not the runs (a summary changed by hand shows).
    LedgerHour.objects.filter(pk=summary.pk).update(lag_p50=7.0)
    assert numbers(page(staff_client), "lag-and-wait")[hour_label(settled_hour)][1] == "7.0 s"

    # A run recorded for the hour afterwards (a missed slot beat recorded after an outage): the
    # hour is measured again, and its summary with it.
    ScheduleRun.objects.bulk_create([finished_run(task, settled_hour + 20 * MINUTE, lag=30, wait=3)])
    assert numbers(page(staff_client), "lag-and-wait")[hour_label(settled_hour)] == [
        "5", "3.0 s", "30 s", "5", "300 ms", "3.0 s"]
    assert LedgerHour.objects.values_list("runs", "lag_p50").get(pk=summary.pk) == (5, 3.0)


def test_no_summary_while_an_hour_has_an_unfinished_run_or_ended_less_than_an_hour_ago(staff_client, now):
    task = interval_task("Import orders", MINUTE)
    still_running, recent = now - 4 * HOUR, now - HOUR
    ScheduleRun.objects.bulk_create([finished_run(task, still_running, lag=1, wait=1),
                                     timed_run(task, still_running + MINUTE, lag=2, wait=1),
                                     finished_run(task, recent, lag=1, wait=1)])

    table = numbers(page(staff_client), "lag-and-wait")

    assert table[hour_label(still_running)][0] == "2"
    assert table[hour_label(recent)][0] == "1"
    summarised = set(LedgerHour.objects.values_list("hour", flat=True))
    assert still_running.replace(minute=0) not in summarised
    assert recent.replace(minute=0) not in summarised
    # The hours with no run at all that ended an hour ago are settled: nothing will change them.
    assert (now - 2 * HOUR).replace(minute=0) in summarised


def test_the_lag_and_wait_charts_draw_a_point_per_hour_measured(staff_client, now):
    task = interval_task("Import orders", MINUTE)
    ScheduleRun.objects.bulk_create([timed_run(task, now - k * HOUR, lag=2, wait=1) for k in (1, 2, 5)])

    document = page(staff_client)

    for chart in ("lag", "wait"):
        assert len(document.cssselect(f"#chart-{chart} .series-p50 circle")) == 3
        assert len(document.cssselect(f"#chart-{chart} .series-p95 circle")) == 3
    points = texts(document, "#chart-lag .series-p95 circle > title")
    assert points[0] == f"{hour_label(now - 5 * HOUR)}: p95 2.0 s"


def test_it_lists_the_slowest_schedules_first_with_their_average_and_longest_run(staff_client, now):
    quick, slow = interval_task("Quick ping", MINUTE), interval_task("Nightly export", HOUR)
    ledger_runs(quick, [now - k * MINUTE for k in range(1, 4)], took=2)
    ledger_run(slow, now - 2 * HOUR, took=600)
    ledger_run(slow, now - 3 * HOUR, took=1200)

    document = page(staff_client)

    assert texts(document, "#chart-slowest .name") == ["Nightly export", "Quick ping"]
    assert texts(document, "#chart-slowest .value") == [
        "15 min 0 s on average, 20 min 0 s at most, 2 runs", "2.0 s on average, 2.0 s at most, 3 runs"]
    links = [a.get("href") for a in document.cssselect("#chart-slowest a")]
    assert links[0] == f"{reverse('admin:scheduler_schedulerun_changelist')}?schedule={slow.id}"


def test_it_shows_each_worker_alive_and_the_schedules_it_runs_now(staff_client, now):
    WorkerHeartbeat.objects.create(worker="celery@alpha", first_beat_at=now - HOUR, last_beat_at=now - 10 * SECOND)
    WorkerHeartbeat.objects.create(worker="celery@idle", first_beat_at=now - HOUR, last_beat_at=now - 20 * SECOND)
    WorkerHeartbeat.objects.create(worker="celery@gone", first_beat_at=now - HOUR, last_beat_at=now - HOUR)
    export, backup = interval_task("Export", HOUR), interval_task("Backup", HOUR)
    ledger_run(export, now - 5 * MINUTE, status="running", started_at=now - 4 * MINUTE, worker="celery@alpha:41:ab12")
    ledger_run(backup, now - 9 * MINUTE, status="running", started_at=now - 9 * MINUTE, worker="celery@gone:7:cd34")

    document = page(staff_client)

    assert texts(document, "#workers tr.worker td:first-child") == ["celery@alpha", "celery@idle", "celery@gone"]
    assert texts(document, "#workers tr.worker .status-badge") == ["alive", "alive", "no recent heartbeat"]
    assert texts(document, "#workers tr.worker td:last-child") == [
        "Export (for 4 minutes)", "idle", "Backup (for 9 minutes)"]
    assert texts(document, "#figure-workers .figure") == ["2"]


def test_it_reads_each_queues_length_from_redis(staff_client, broker):
    broker.rpush("reports", "a", "b", "c")
    broker.rpush("default", "d")

    document = page(staff_client)

    assert texts(document, "#queues tr.queue-reports td.number") == ["3"]
    assert texts(document, "#queues tr.queue-default td.number") == ["1"]
    assert texts(document, "#figure-queued .figure") == ["4"]


def test_it_says_redis_is_unreachable_and_still_shows_the_rest(staff_client, settings, now):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    ledger_run(interval_task("Import orders", MINUTE), now - HOUR)

    document = page(staff_client)

    assert "Redis unreachable" in texts(document, "#figure-queued")[0]
    assert texts(document, "#queues .errornote")[0].startswith("Redis unreachable")
    assert texts(document, "#figure-succeeded .figure") == ["1"]


def test_it_escapes_a_schedule_name_that_holds_markup(staff_client, now):
    name = "<script>alert('owned')</script>"
    task = interval_task(name, MINUTE)
    ledger_run(task, now - HOUR, took=5)
    WorkerHeartbeat.objects.create(worker="celery@alpha", first_beat_at=now, last_beat_at=now)
    ledger_run(task, now - MINUTE, status="running", started_at=now - MINUTE, worker="celery@alpha:1:ab")

    response = staff_client.get(URL)

    assert b"<script>alert" not in response.content
    assert response.content.count(b"&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;") == 3
    document = lxml.html.fromstring(response.content.decode())
    assert texts(document, "#chart-slowest .label > title") == [name]
    assert texts(document, "#workers tr.worker a") == [name]


def staff_member(django_user_model, *permissions: str):
    user = django_user_model.objects.create_user("viewer", "viewer@example.com", "pw-for-tests", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    return user


def test_it_refuses_a_staff_member_who_may_not_view_runs(client, django_user_model):
    client.force_login(staff_member(django_user_model, "view_periodictask"))
    assert client.get(URL).status_code == 403


def test_a_staff_member_who_may_view_runs_sees_it(client, django_user_model):
    client.force_login(staff_member(django_user_model, "view_schedulerun"))
    response = client.get(URL)
    assert response.status_code == 200
    assert b'id="chart-runs"' in response.content


def test_it_sends_a_visitor_who_is_not_staff_to_the_login_page(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone", "someone@example.com", "pw-for-tests"))
    response = client.get(URL)
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_its_charts_hold_no_script_and_fetch_nothing(staff_client, now):
    ledger_run(interval_task("Import orders", MINUTE), now - HOUR, took=1)
    document = page(staff_client)
    dashboard = document.cssselect("#dashboard")[0]
    assert not dashboard.cssselect("script, img, link, iframe, object")
    assert len(dashboard.cssselect("svg.chart[role=img]")) == 4
    for chart in dashboard.cssselect("svg.chart"):
        assert chart.cssselect("title")[0].text_content() and chart.cssselect("desc")[0].text_content()
        assert chart.get("aria-labelledby") == f"{chart.get('id')}-title {chart.get('id')}-desc"


def test_an_unknown_window_shows_the_last_24_hours(staff_client):
    document = page(staff_client, window="1y")
    assert texts(document, "#dashboard-window [aria-current=page]") == ["Last 24 hours"]
    assert len(document.cssselect("#chart-runs g.bar")) == 24


def test_hours_are_counted_in_utc_so_a_night_with_a_dst_change_keeps_its_hours(staff_client, settings, monkeypatch):
    settings.TIME_ZONE = "Europe/Berlin"
    # 2026-03-29 02:00 in Berlin does not exist: the clocks went from 02:00 CET to 03:00 CEST.
    stopped = datetime(2026, 3, 29, 9, 30, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: stopped)
    task = interval_task("Import orders", MINUTE)
    ledger_run(task, datetime(2026, 3, 29, 0, 15, tzinfo=UTC))  # 01:15 CET
    ledger_run(task, datetime(2026, 3, 29, 1, 15, tzinfo=UTC))  # 03:15 CEST

    tooltips = texts(page(staff_client), "#chart-runs g.bar > title")

    assert len(tooltips) == 24
    assert "Sun 29 Mar 01:00 CET: 1 succeeded" in tooltips
    assert "Sun 29 Mar 03:00 CEST: 1 succeeded" in tooltips


@pytest.mark.skipif(connection.vendor == "postgresql", reason="PostgreSQL ranks every run in the query")
def test_on_sqlite_a_busy_window_is_ranked_from_a_random_sample_and_says_so(staff_client, now, monkeypatch):
    monkeypatch.setattr(dashboard_queries, "SAMPLE_ABOVE", 20)
    task = interval_task("Import orders", MINUTE)
    hour = now - 2 * HOUR
    ScheduleRun.objects.bulk_create([timed_run(task, hour + k * MINUTE, lag=3, wait=1) for k in range(40)])

    document = page(staff_client)

    assert texts(document, "#spread-sample")[0].startswith("Over a random sample of one run in 2")
    sampled, lag_p50, lag_p95, *_ = numbers(document, "lag-and-wait")[hour_label(hour)]
    assert 0 < int(sampled) < 40 and (lag_p50, lag_p95) == ("3.0 s", "3.0 s")


def test_the_evaluator_summarises_the_weeks_settled_hours_before_anyone_looks(now, monkeypatch):
    task = interval_task("Import orders", MINUTE)
    five_days_ago = now - 5 * 24 * HOUR
    ScheduleRun.objects.bulk_create([finished_run(task, five_days_ago + k * MINUTE, lag=k, wait=1) for k in (1, 2, 3)])
    # The process closes stale connections before each pass; here that would close the test's.
    monkeypatch.setattr(evaluate, "close_old_connections", lambda: None)

    call_command("evaluate", "--once")

    summary = LedgerHour.objects.get(hour=five_days_ago.replace(minute=0))
    assert (summary.runs, summary.lag_runs, summary.lag_p50, summary.lag_p95) == (3, 3, 2.0, 3.0)
    # Every settled hour of the week: 168 less the current hour and the one that ended under an hour ago.
    assert LedgerHour.objects.count() == 7 * 24 - 2
