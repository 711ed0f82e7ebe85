"""The evaluator's passes against the database: one flip per change of health, its alerts
delivered once to each recipient, inhibited, muted, retried and reminded as people expect."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import evaluator
from monitoring.alerts import deliveries_send
from monitoring.evaluator import evaluation_pass
from monitoring.models import AlertDelivery, AlertSettings, Flip
from scheduler.models import BeatHeartbeat, ScheduleHealth, ScheduleState, WorkerHeartbeat
from tests.builders import interval_task, ledger_run, ledger_runs, with_policy
from tests.scraping.pages import LOOPBACK, PageServer

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


@pytest.fixture
def alive(settings):
    """Beat and a worker alive, and who is alerted by default."""
    settings.ALERT_EMAILS = ["ops@example.com", "dev@example.com"]
    settings.ALERT_WEBHOOK_URL = ""
    now = timezone.now()
    BeatHeartbeat.objects.create(node="beat:1", started_at=now, last_beat_at=now)
    WorkerHeartbeat.objects.create(worker="celery@a", first_beat_at=now, last_beat_at=now)


def evaluate(now=None):
    """One pass at `now` (by default the clock's), beat and workers having beaten then if they did
    just now (a test that stops one sets its heartbeat in the past)."""
    now = now or timezone.now()
    for heartbeat in (BeatHeartbeat, WorkerHeartbeat):
        heartbeat.objects.filter(last_beat_at__gte=timezone.now() - timedelta(seconds=5)).update(last_beat_at=now)
    result = evaluation_pass(node="evaluator:1", started_at=now - timedelta(hours=1), now=now)
    deliveries_send(now=now)
    return result


def nightly(**fields):
    task = interval_task("Nightly import", timedelta(minutes=10), **fields)
    return with_policy(task, failures_to_fail=3)


def test_a_schedule_failing_three_times_alerts_once_per_recipient_and_its_recovery_once(alive, smtp_server):
    task = nightly()
    now = timezone.now()
    ledger_run(task, now - 40 * MINUTE)
    evaluate()
    assert ScheduleHealth.objects.get(task=task).state == "up" and not Flip.objects.exists()
    ledger_runs(task, [now - k * 10 * MINUTE for k in (1, 2)], status="failed",
                error="Traceback (most recent call last):\nRuntimeError: the export server refused")
    evaluate()
    assert not Flip.objects.exists()  # two failures of three: still up
    ledger_run(task, now - 5 * MINUTE, status="failed", error="RuntimeError: the export server refused")
    evaluate()
    evaluate()
    (flip,) = Flip.objects.all()
    assert (flip.from_state, flip.to_state, flip.cause, flip.silenced) == ("up", "failing", "failed", "")
    (mail,) = smtp_server.to("ops@example.com")
    assert mail["Subject"] == "[scheduler] Nightly import: up → failing"
    text = mail.get_body(("plain",)).get_content()
    assert "RuntimeError: the export server refused" in text and f"/admin/scheduler/schedulerun/{flip.run_id}/" in text
    assert len(smtp_server.to("dev@example.com")) == 1
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}

    ledger_run(task, now - MINUTE)
    evaluate()
    assert Flip.objects.first().to_state == "up"
    assert [m["Subject"] for m in smtp_server.to("ops@example.com")][-1] == "[scheduler] Nightly import: failing → up"


def test_no_workers_is_one_alert_naming_the_waiting_schedules_not_one_per_schedule(alive, smtp_server):
    now = timezone.now()
    tasks = [interval_task(f"Job {k}", timedelta(minutes=1)) for k in range(3)]
    for task in tasks:
        ledger_run(task, now - 10 * MINUTE)
    evaluate()
    WorkerHeartbeat.objects.update(last_beat_at=now - 10 * MINUTE)
    for task in tasks:
        ledger_run(task, now - 3 * MINUTE, status="sent")
    evaluate()

    workers = Flip.objects.get(subject="workers")
    assert (workers.from_state, workers.to_state) == ("up", "down")
    assert "Job 0, Job 1, Job 2" in workers.why
    schedule_flips = Flip.objects.filter(subject="schedule")
    assert schedule_flips.count() == 3
    assert {flip.silenced for flip in schedule_flips} == {"covered by the “no workers” alert"}
    assert [m["Subject"] for m in smtp_server.to("ops@example.com")] == ["[scheduler] Workers: up → down"]

    WorkerHeartbeat.objects.update(last_beat_at=timezone.now())
    for task in tasks:
        ledger_run(task, now - MINUTE)
    evaluate()
    assert [m["Subject"] for m in smtp_server.to("ops@example.com")] == [
        "[scheduler] Workers: up → down", "[scheduler] Workers: down → up"]


def test_beat_down_is_one_alert_and_the_schedules_are_unknown_not_down(alive, smtp_server):
    now = timezone.now()
    task = interval_task("Job", timedelta(minutes=1))
    ledger_run(task, now - 2 * MINUTE)
    evaluate()
    BeatHeartbeat.objects.update(last_beat_at=now - 5 * MINUTE)
    ScheduleState.objects.update_or_create(task=task, defaults={
        "next_due_at": now - 3 * MINUTE, "fingerprint": "", "synced_at": now})
    evaluate()
    assert Flip.objects.get(subject="beat").to_state == "down"
    assert ScheduleHealth.objects.get(task=task).state == "unknown"
    assert [m["Subject"] for m in smtp_server.to("ops@example.com")] == ["[scheduler] Beat: up → down"]


def test_a_muted_schedule_changes_state_but_alerts_nobody(alive, smtp_server):
    task = nightly()
    AlertSettings.objects.create(task=task, muted_until=timezone.now() + timedelta(hours=2),
                                 mute_reason="database migration tonight")
    now = timezone.now()
    ledger_runs(task, [now - k * MINUTE for k in (1, 2, 3)], status="failed")
    evaluate()
    flip = Flip.objects.get()
    assert flip.to_state == "failing" and flip.silenced.endswith("database migration tonight")
    assert smtp_server.received == [] and not AlertDelivery.objects.exists()


def test_an_smtp_server_answering_4xx_gets_the_alert_once_it_recovers(alive, smtp_server):
    smtp_server.rcpt_replies = {"ops@example.com": ["451 4.3.0 try again later"]}
    task = nightly()
    now = timezone.now()
    ledger_runs(task, [now - k * MINUTE for k in (1, 2, 3)], status="failed")
    evaluate()
    delivery = AlertDelivery.objects.get(recipient="ops@example.com")
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "451 4.3.0 try again later")
    assert delivery.next_attempt_at > now
    deliveries_send(now=delivery.next_attempt_at + timedelta(seconds=1))
    deliveries_send(now=delivery.next_attempt_at + timedelta(seconds=2))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 2, "")
    assert len(smtp_server.to("ops@example.com")) == 1


def test_a_delivery_whose_evaluator_was_killed_mid_send_is_sent_once_its_claim_lapses(alive, smtp_server):
    task = nightly()
    now = timezone.now()
    ledger_runs(task, [now - k * MINUTE for k in (1, 2, 3)], status="failed")
    evaluation_pass(node="evaluator:1", started_at=now - timedelta(hours=1), now=now)
    AlertDelivery.objects.update(status="sending", claimed_by="evaluator:99:dead", claimed_until=now + MINUTE,
                                 attempts=1)
    assert deliveries_send(now=now) == 0
    assert deliveries_send(now=now + 2 * MINUTE) == 2
    assert deliveries_send(now=now + 3 * MINUTE) == 0
    assert len(smtp_server.to("ops@example.com")) == 1


def test_a_reminder_while_it_stays_down_and_none_once_it_is_up(alive, smtp_server):
    task = nightly()
    AlertSettings.objects.create(task=task, remind_every_minutes=60)
    now = timezone.now()
    ledger_runs(task, [now - k * MINUTE for k in (1, 2, 3)], status="failed")
    evaluate(now)
    evaluate(now + 30 * MINUTE)
    evaluate(now + 61 * MINUTE)
    evaluate(now + 62 * MINUTE)
    subjects = [m["Subject"] for m in smtp_server.to("ops@example.com")]
    # First seen failing (the evaluator is new to it): new → failing.
    assert subjects == ["[scheduler] Nightly import: new → failing", "[scheduler] Nightly import is still failing"]


def test_the_webhook_gets_the_alert_as_json_through_the_gate(alive, settings, smtp_server):
    hook = PageServer("127.0.0.8")
    try:
        hook.pages["/alerts"] = lambda page: page.reply(204)
        settings.OUTBOUND_ALLOWED_NETWORKS, settings.WEBHOOK_ALLOWED_PORTS = LOOPBACK, (hook.port,)
        task = nightly()
        AlertSettings.objects.create(task=task, webhook_url=f"http://127.0.0.8:{hook.port}/alerts")
        now = timezone.now()
        ledger_runs(task, [now - k * MINUTE for k in (1, 2, 3)], status="failed")
        evaluate()
        ((path, body),) = hook.posted
        payload = json.loads(body)
        assert (path, payload["schedule"], payload["from"], payload["to"], payload["type"]) == (
            "/alerts", "Nightly import", "new", "failing", "ALERT")
        assert AlertDelivery.objects.get(channel="webhook").status == "sent"
    finally:
        hook.shutdown()
        hook.server_close()


def test_a_webhook_to_an_internal_address_is_refused_when_saved_naming_the_field(alive):
    from django.core.exceptions import ValidationError

    task = nightly()
    settings = AlertSettings(task=task, webhook_url="http://169.254.169.254/latest/")
    with pytest.raises(ValidationError) as refused:
        settings.full_clean()
    assert "metadata" in " ".join(refused.value.message_dict["webhook_url"])
    with pytest.raises(ValidationError) as refused:
        AlertSettings(task=task, mute_reason="maintenance").full_clean()
    assert "muted_until" in refused.value.message_dict


def test_a_run_waiting_since_after_the_workers_last_heartbeat_is_not_alerted_late_before_no_workers_is(
        alive, smtp_server):
    now = timezone.now()
    task = interval_task("Job", timedelta(minutes=1))  # start grace 30 s
    ledger_run(task, now - 5 * MINUTE)
    evaluate(now)
    # The worker's last heartbeat was a minute ago (not stale yet); the run due 40 s ago waits.
    WorkerHeartbeat.objects.update(last_beat_at=now - MINUTE)
    ledger_run(task, now - timedelta(seconds=40), status="sent")
    evaluate(now)
    assert ScheduleHealth.objects.get(task=task).state == "up" and not Flip.objects.exists()
    # Once the worker is stale, one "no workers" alert says it, and the schedule's flip is silenced.
    evaluate(now + MINUTE)
    assert [m["Subject"] for m in smtp_server.to("ops@example.com")] == ["[scheduler] Workers: up → down"]
    assert Flip.objects.get(subject="schedule").silenced == "covered by the “no workers” alert"


def test_a_pass_records_a_bounded_number_of_quiet_new_schedules_and_every_one_with_news(alive, smtp_server,
                                                                                     monkeypatch):
    monkeypatch.setattr(evaluator, "QUIET_FIRST_PER_PASS", 2)
    quiet = [interval_task(f"quiet {number}", timedelta(minutes=10)) for number in range(5)]
    now = timezone.now()
    failing = nightly()
    ledger_runs(failing, [now - k * timedelta(minutes=10) for k in (3, 2, 1)], status="failed", error="boom")

    evaluate(now)
    assert ScheduleHealth.objects.filter(task__in=quiet).count() == 2
    assert ScheduleHealth.objects.get(task=failing).state == "failing"
    assert Flip.objects.filter(schedule=failing).count() == 1

    evaluate(now + timedelta(seconds=10))
    evaluate(now + timedelta(seconds=20))
    assert ScheduleHealth.objects.filter(task__in=quiet).count() == 5
    assert not Flip.objects.filter(schedule__in=quiet).exists()  # new is no news
