"""/metrics as Prometheus reads it (parsed by prometheus-client's own parser) and /healthz as a
load balancer does, against real ledger rows and a real Redis."""

from datetime import date, timedelta

import pytest
import redis
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from cleanup.models import CleanupRun
from monitoring import metrics
from monitoring.models import AlertDelivery, EvaluatorHeartbeat, Flip
from reports.models import Report, ReportDelivery, ReportRun
from scheduler.models import BeatHeartbeat, ScheduleHealth, ScheduleRun, ScheduleState, WorkerHeartbeat
from scraping.models import Change, FetchRecord, Snapshot, Source
from tests.builders import interval_task, ledger_run, ledger_runs
from tests.mail import free_port

pytestmark = pytest.mark.django_db

TOKEN = "a-long-random-metrics-token"
HOUR, MINUTE, SECOND = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)
# Every label /metrics may carry: none names a run, task id, URL, error text or process.
BOUNDED_LABELS = {"schedule", "state", "outcome", "quantile", "queue", "channel", "status", "target"}


@pytest.fixture(autouse=True)
def configured(settings, redis_url, monkeypatch):
    """A token set, the broker at the test Redis, and nothing rendered yet in this process."""
    settings.METRICS_TOKEN = TOKEN
    settings.CELERY_BROKER_URL = redis_url
    monkeypatch.setattr(metrics, "_rendered", {"at": float("-inf"), "text": b""})


def scrape(client) -> list:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    return list(text_string_to_metric_families(response.content.decode()))


def sample(families, name: str, **labels) -> float | None:
    """The value of the sample `name` with exactly these labels; None when there is none."""
    found = [s.value for family in families for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


def test_it_counts_finished_slots_by_schedule_and_outcome(client):
    nightly = interval_task("Nightly import", HOUR)
    start = timezone.now() - 5 * HOUR
    ledger_runs(nightly, [start, start + HOUR])
    ledger_run(nightly, start + 2 * HOUR, status=ScheduleRun.Status.FAILED, error="Traceback ...")
    ledger_run(nightly, start + 3 * HOUR, status=ScheduleRun.Status.RUNNING)
    families = scrape(client)
    assert sample(families, "sched_slots_total", outcome="succeeded") == 2
    assert sample(families, "sched_slots_total", outcome="failed") == 1
    assert sample(families, "sched_slots_total", outcome="running") is None


def test_it_says_each_schedules_state_and_new_for_one_the_evaluator_has_not_judged(client):
    judged = interval_task("Judged", HOUR)
    interval_task("Fresh", HOUR)
    now = timezone.now()
    ScheduleHealth.objects.create(task=judged, state="failing", cause="failed", since=now, evaluated_at=now)
    families = scrape(client)
    assert sample(families, "sched_schedule_state", schedule="Judged", state="failing") == 1
    assert sample(families, "sched_schedule_state", schedule="Judged", state="up") is None  # only its state
    assert sample(families, "sched_schedule_state", schedule="Fresh", state="new") == 1
    assert [state for state in ("new", "up", "late", "down", "failing", "paused", "unknown")
            if sample(families, "sched_schedule_state", schedule="Fresh", state=state) is not None] == ["new"]


def test_it_gives_last_success_and_next_due_as_timestamps_and_last_duration_in_seconds(client):
    nightly = interval_task("Nightly import", HOUR)
    slot = timezone.now().replace(microsecond=0) - 3 * HOUR
    ledger_run(nightly, slot, took=30)
    ledger_run(nightly, slot + HOUR, status=ScheduleRun.Status.FAILED, took=12)
    ledger_run(nightly, slot + 2 * HOUR, status=ScheduleRun.Status.MISSED)
    due = slot + 4 * HOUR
    ScheduleState.objects.update_or_create(task=nightly, defaults={"next_due_at": due, "fingerprint": "f",
                                                                   "synced_at": timezone.now()})
    families = scrape(client)
    assert sample(families, "sched_schedule_last_success_timestamp_seconds", schedule="Nightly import") == \
        (slot + 30 * SECOND).timestamp()
    assert sample(families, "sched_schedule_next_due_timestamp_seconds", schedule="Nightly import") == due.timestamp()
    # The missed run never ran: the newest duration is the failed run's.
    assert sample(families, "sched_schedule_last_duration_seconds", schedule="Nightly import") == 12


def test_a_schedule_that_never_succeeded_has_no_last_success_sample(client):
    interval_task("Brand new", HOUR)
    assert sample(scrape(client), "sched_schedule_last_success_timestamp_seconds", schedule="Brand new") is None


def test_dispatch_lag_and_queue_wait_are_p50_and_p95_over_the_last_hour(client):
    nightly = interval_task("Often", MINUTE)
    now = timezone.now()
    for number in range(1, 11):
        slot = now - number * MINUTE
        sent = slot + number * SECOND
        ledger_run(nightly, slot, sent_at=sent, started_at=sent + 2 * number * SECOND, finished_at=now)
    # Older than the hour, and a manual run (sent when asked, not by beat): neither is dispatch lag.
    ledger_run(nightly, now - 2 * HOUR, sent_at=now - HOUR, started_at=now - HOUR)
    ledger_run(nightly, now - 30 * SECOND, kind=ScheduleRun.Kind.MANUAL, sent_at=now + HOUR)
    families = scrape(client)
    assert sample(families, "sched_dispatch_lag_seconds", quantile="0.5") == 5
    assert sample(families, "sched_dispatch_lag_seconds", quantile="0.95") == 10
    assert sample(families, "sched_queue_wait_seconds", quantile="0.5") == 10
    assert sample(families, "sched_queue_wait_seconds", quantile="0.95") == 20


def test_it_counts_fresh_workers_and_beats_and_gives_the_evaluators_last_pass(client):
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="celery@a", first_beat_at=now, last_beat_at=now)
    WorkerHeartbeat.objects.create(worker="celery@gone", first_beat_at=now - HOUR, last_beat_at=now - HOUR)
    BeatHeartbeat.objects.create(node="beat:1", started_at=now, last_beat_at=now)
    assert sample(scrape(client), "sched_evaluator_last_pass_timestamp_seconds") == 0
    EvaluatorHeartbeat.objects.create(node="evaluator:1", started_at=now, last_beat_at=now)
    metrics._rendered["at"] = float("-inf")
    families = scrape(client)
    assert sample(families, "sched_workers_alive") == 1 and sample(families, "sched_beats_alive") == 1
    assert sample(families, "sched_evaluator_last_pass_timestamp_seconds") == now.timestamp()


def test_it_reads_each_queues_length_from_redis(client, redis_url):
    broker = redis.Redis.from_url(redis_url)
    broker.delete("reports", "default")
    broker.rpush("reports", "one", "two", "three")
    try:
        families = scrape(client)
    finally:
        broker.delete("reports")
        broker.close()
    assert sample(families, "sched_redis_up") == 1
    assert sample(families, "sched_queue_length", queue="reports") == 3
    assert sample(families, "sched_queue_length", queue="default") == 0


def test_with_redis_unreachable_it_says_so_and_leaves_queue_lengths_out(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    families = scrape(client)
    assert sample(families, "sched_redis_up") == 0
    assert not [s for family in families for s in family.samples if s.name == "sched_queue_length"]


def test_it_counts_alerts_cleanup_report_deliveries_and_scraping(client):
    now = timezone.now()
    flip = Flip.objects.create(schedule_name="Nightly import", from_state="up", to_state="down", why="", at=now)
    for recipient, status in (("ops@example.com", "sent"), ("dev@example.com", "sent"), ("x@example.com", "failed")):
        AlertDelivery.objects.create(flip=flip, channel="email", recipient=recipient, status=status,
                                     next_attempt_at=now)
    for deleted, dry_run in ((120, False), (30, False), (999, True)):
        CleanupRun.objects.create(target="task_results", trigger="command", dry_run=dry_run, started_at=now,
                                  rows_deleted=deleted)
    report = Report.objects.create(name="Visits", recipients="a@example.com")
    run = ReportRun.objects.create(report=report, covered_day=date(2026, 3, 1), scheduled_for=now, status="ok",
                                   built_at=now)
    ReportDelivery.objects.create(run=run, recipient="a@example.com", status="sent")
    source = Source.objects.create(name="Prices", url="https://example.com/")
    snapshot = Snapshot.objects.create(source=source, content_hash="0" * 64, text="Tea", first_seen_at=now,
                                       last_seen_at=now)
    Change.objects.create(source=source, after=snapshot, diff="", raised_at=now)
    for outcome in ("fetched", "fetched", "timed_out"):
        FetchRecord.objects.create(source=source, fetched_at=now, outcome=outcome)
    families = scrape(client)
    assert sample(families, "sched_alerts_total", channel="email", status="sent") == 2
    assert sample(families, "sched_alerts_total", channel="email", status="failed") == 1
    assert sample(families, "sched_cleanup_rows_deleted_total", target="task_results") == 150
    assert sample(families, "sched_report_deliveries_total", status="sent") == 1
    assert sample(families, "scrape_fetches_total", outcome="fetched") == 2
    assert sample(families, "scrape_fetches_total", outcome="timed_out") == 1
    assert sample(families, "scrape_changes_pending") == 1
    assert sample(families, "scrape_sources", state="new") == 1


def test_no_label_names_a_run_task_url_error_or_process(client):
    nightly = interval_task("Nightly import", HOUR)
    ledger_run(nightly, status=ScheduleRun.Status.FAILED, error="RuntimeError: disk full", worker="celery@a",
               took=1)
    labels = {name for family in scrape(client) for s in family.samples for name in s.labels}
    assert labels <= BOUNDED_LABELS


def test_it_answers_from_the_text_it_rendered_within_ten_seconds(client):
    nightly = interval_task("Nightly import", HOUR)
    ledger_run(nightly)
    first = scrape(client)
    ledger_run(nightly, timezone.now() - HOUR)
    assert sample(scrape(client), "sched_slots_total", outcome="succeeded") == \
        sample(first, "sched_slots_total", outcome="succeeded") == 1
    metrics._rendered["at"] -= metrics.CACHE_SECONDS
    assert sample(scrape(client), "sched_slots_total", outcome="succeeded") == 2


def test_the_right_token_reads_the_metrics_in_prometheus_text_format(client):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response["Content-Type"] == CONTENT_TYPE_LATEST
    assert b"# TYPE sched_slots_total counter" in response.content


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", "Bearer tökén"])
def test_a_missing_or_wrong_token_is_refused_with_401(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert b"sched_" not in response.content


def test_without_a_metrics_token_configured_metrics_are_off_and_say_so(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 403 and b"off until METRICS_TOKEN is set" in response.content


@pytest.mark.parametrize("url", ["/metrics", "/healthz"])
def test_both_endpoints_answer_get_only_without_login_or_csrf(client, url):
    checked = type(client)(enforce_csrf_checks=True)
    assert checked.post(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def beat_heartbeat(ago: timedelta) -> None:
    at = timezone.now() - ago
    BeatHeartbeat.objects.create(node="beat:1", started_at=at, last_beat_at=at)


def test_healthz_is_200_with_the_database_redis_and_a_fresh_beat(client):
    beat_heartbeat(5 * SECOND)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok", "beat": "fresh", "status": "ok"}


@pytest.mark.parametrize(("beat_ago", "beat"), [(2 * MINUTE, "stale"), (None, "never")])
def test_healthz_is_503_while_beat_is_stale_or_never_ran(client, beat_ago, beat):
    if beat_ago:
        beat_heartbeat(beat_ago)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["beat"] == beat and response.json()["status"] == "error"


def test_healthz_is_503_when_redis_does_not_answer_and_never_shows_the_broker_url(client, settings):
    beat_heartbeat(5 * SECOND)
    settings.CELERY_BROKER_URL = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "redis": "error", "beat": "fresh", "status": "error"}
    assert b"hunter2" not in response.content and b"127.0.0.1" not in response.content


def test_each_scrape_reads_the_values_anew_and_a_deleted_schedule_goes(client):
    nightly, hourly = interval_task("Nightly import", HOUR), interval_task("Hourly sync", HOUR)
    ScheduleState.objects.update_or_create(task=nightly, defaults={
        "next_due_at": timezone.now() + HOUR, "fingerprint": "f", "synced_at": timezone.now()})
    families = scrape(client)
    assert sample(families, "sched_schedule_state", schedule="Nightly import", state="new") == 1

    # Samples are made again for what changed (they are kept by the values they were made from).
    ScheduleHealth.objects.create(task=nightly, state="down", since=timezone.now(), evaluated_at=timezone.now())
    later = timezone.now() + 2 * HOUR
    ScheduleState.objects.filter(task=nightly).update(next_due_at=later)
    hourly.delete()
    metrics._rendered["at"] = float("-inf")
    families = scrape(client)

    assert sample(families, "sched_schedule_state", schedule="Nightly import", state="down") == 1
    assert sample(families, "sched_schedule_state", schedule="Nightly import", state="new") is None
    assert sample(families, "sched_schedule_next_due_timestamp_seconds", schedule="Nightly import") == pytest.approx(
        later.timestamp(), abs=0.01)
    assert sample(families, "sched_schedule_state", schedule="Hourly sync", state="new") is None
