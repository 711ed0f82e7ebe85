"""What the admin shows of health: the home page's status and worst schedules, the schedule list's
health column, the alerts on a schedule's page, the flips with their deliveries."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import AlertDelivery, AlertSettings, EvaluatorHeartbeat, Flip
from scheduler.models import BeatHeartbeat, ScheduleHealth, WorkerHeartbeat
from tests.builders import interval_task, ledger_run
from tests.scheduler.test_admin_schedules import change_url, schedule_change_form
from wiring.embedded_redis import free_port

pytestmark = pytest.mark.django_db


def health(task, state: str, why: str) -> ScheduleHealth:
    now = timezone.now()
    return ScheduleHealth.objects.create(task=task, state=state, why=why, since=now, evaluated_at=now)


def test_the_home_page_goes_red_without_workers_or_evaluator_and_lists_the_worst_schedules(
        staff_client, settings, redis_url):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    settings.CELERY_BROKER_URL = redis_url  # Redis answers: the workers are what is missing
    now = timezone.now()
    BeatHeartbeat.objects.create(node="beat:1", started_at=now, last_beat_at=now)
    ledger_run(interval_task("Waiting job", timedelta(minutes=1)), now - timedelta(minutes=5), status="sent")
    health(interval_task("Export", timedelta(hours=1)), "failing", "3 failed run(s) in a row")
    health(interval_task("Import", timedelta(hours=1)), "late", "sent but not started")
    health(interval_task("Fine", timedelta(hours=1)), "up", "")

    page = staff_client.get("/admin/").content.decode()

    assert "Beat is running" in page
    assert "No worker is alive" in page and "1 run waiting" in page
    assert "The evaluator is silent" in page
    assert "printed to the log" in page
    worst = page[page.index('id="worst-schedules"'):]
    assert worst.index("Export") < worst.index("Import") and "Fine" not in worst


def test_without_workers_and_with_redis_silent_the_home_page_names_redis_not_the_workers(staff_client, settings):
    # The worker process runs on while Redis is down, retrying, but stops recording itself
    # alive: telling people to start a worker sent them to start a second one.
    settings.CELERY_BROKER_URL = f"redis://:pw@127.0.0.1:{free_port()}/0"  # nothing listens there
    page = staff_client.get("/admin/").content.decode()
    assert "Redis, the broker, does not answer" in page and "No worker is alive" not in page
    assert ":pw@" not in page  # the URL, with its password, is not shown


def test_the_home_page_is_calm_when_all_is_alive(staff_client, settings):
    settings.ALERT_EMAILS = ["ops@example.com"]
    now = timezone.now()
    BeatHeartbeat.objects.create(node="beat:1", started_at=now, last_beat_at=now)
    WorkerHeartbeat.objects.create(worker="celery@a", first_beat_at=now, last_beat_at=now)
    EvaluatorHeartbeat.objects.create(node="evaluator:1", started_at=now, last_beat_at=now)
    page = staff_client.get("/admin/").content.decode()
    assert "1 worker alive: celery@a" in page and "The evaluator watches every schedule" in page
    assert "No default alert recipients" not in page and "worst-schedules" not in page


def test_the_schedule_list_and_page_show_health_with_why(staff_client):
    task = interval_task("Export", timedelta(hours=1))
    health(task, "down", "the run due 2026-01-01 was sent but not started: no worker is alive")
    listing = staff_client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "status-health-down" in listing and "no worker is alive" in listing
    page = staff_client.get(change_url(task)).content.decode()
    assert "status-health-down" in page and "Start grace (seconds)" in page and "Remind every (minutes)" in page


def test_alerts_are_set_on_the_schedules_page_and_a_bad_webhook_is_refused_naming_the_field(staff_client):
    task = interval_task("Export", timedelta(hours=1))
    form = schedule_change_form(task)
    form.update({"alert_settings-TOTAL_FORMS": "1", "alert_settings-0-task": task.pk,
                 "alert_settings-0-emails": "ops@example.com, not-an-address",
                 "alert_settings-0-webhook_url": "http://10.0.0.5/hook", "alert_settings-0-remind_every_minutes": "0",
                 "alert_settings-0-muted_until_0": "", "alert_settings-0-muted_until_1": "",
                 "alert_settings-0-mute_reason": ""})
    page = staff_client.post(change_url(task), form).content.decode()
    assert "&#x27;not-an-address&#x27; is not a valid email address" in page
    assert not AlertSettings.objects.exists()
    form.update({"alert_settings-0-emails": "ops@example.com", "alert_settings-0-remind_every_minutes": "60"})
    page = staff_client.post(change_url(task), form).content.decode()
    assert "Refused by the gate" in page and "private network" in page
    form["alert_settings-0-webhook_url"] = ""
    assert staff_client.post(change_url(task), form).status_code == 302
    assert AlertSettings.objects.get(task=task).email_list == ["ops@example.com"]


def test_a_flip_shows_who_was_told_and_how_it_went(staff_client):
    flip = Flip.objects.create(subject="workers", from_state="up", to_state="down", why="no worker heartbeat",
                               at=timezone.now())
    AlertDelivery.objects.create(flip=flip, channel="email", recipient="ops@example.com", status="failed",
                                 attempts=8, last_error="451 try later", next_attempt_at=timezone.now())
    page = staff_client.get(f"/admin/monitoring/flip/{flip.pk}/change/").content.decode()
    assert "Workers: up → down" in page and "ops@example.com" in page and "451 try later" in page
    assert staff_client.get("/admin/monitoring/flip/").status_code == 200


def test_the_ledger_marks_runs_that_started_or_wait_past_their_start_grace_as_late(staff_client):
    now = timezone.now()
    minutely = interval_task("Every minute", timedelta(minutes=1))  # start grace 30 s
    hourly = interval_task("Every hour", timedelta(hours=1))  # start grace 15 min
    ledger_run(minutely, now - timedelta(minutes=5), status="sent")
    ledger_run(hourly, now - timedelta(minutes=5), status="sent")
    ledger_run(minutely, now - timedelta(minutes=10), started_at=now - timedelta(minutes=8),
               finished_at=now - timedelta(minutes=8))
    page = staff_client.get("/admin/scheduler/schedulerun/").content.decode()
    assert page.count("status-run-late") == 2
    assert re.search(r"late: waiting 5 min \d+ s after its slot", page)
    assert "late: started 2 min 0 s after its slot" in page
