"""Monitoring and alerting (issue 12) with real parts: a real worker, beat and evaluator
(`manage.py evaluate`), a private Redis, a loopback SMTP server and a loopback webhook receiver.

- the worker stops: one "no workers" alert naming the schedules that wait, not one per schedule,
  then one recovery when a worker is back;
- beat stops: one "beat down" alert, the schedules become unknown, none is alerted on its own;
- a task fails run after run: one "failing" alert by e-mail and one webhook POST, not one per failure.
"""

import json
import re
import signal
import sys
import time
from datetime import timedelta

import pytest
from celery import shared_task

from monitoring.models import AlertDelivery, Flip, SystemHealth
from scheduler.health import Cause, State
from scheduler.health_reads import RUNS_READ
from scheduler.models import BeatHeartbeat, ScheduleHealth, ScheduleRun, WorkerHeartbeat
from tests.builders import interval_task, with_policy
from tests.e2e.processes import celery_argv, worker_argv
from tests.e2e.waiting import wait_until
from tests.mail import SmtpServer, free_port
from tests.scraping.pages import PageServer

pytestmark = pytest.mark.django_db(transaction=True)

ALERTED = "oncall@example.com"
PREFIX = "[scheduler] "
# A worker records that it is alive on Celery's event heartbeat (every 2 s), at most every third
# of its staleness (scheduler.worker_liveness): every 4 s here. 8 s leaves a record 4 s late, a
# heartbeat missed on a busy machine, without the workers taken for stopped ("up → down" mailed,
# and every exact list of mails below wrong). At 4 s one late heartbeat was enough.
WORKER_STALE_SECONDS = 8
# Beat records that it is alive three times per BEAT_STALE_SECONDS (at most every 15 s); 18 s
# leaves a stopped beat seen within a few passes while a busy machine's slow tick is not taken
# for a stop.
BEAT_STALE_SECONDS = 18
# The schedules' start grace is longer than it takes to see the worker or beat stopped (its
# staleness, a record interval and a pass): their runs that wait are known to wait for the
# missing part when they turn late, and the one system alert covers them. (The evaluator also
# holds a schedule's state while its waiting run is newer than the last heartbeat.)
NO_WORKER_GRACE_SECONDS = WORKER_STALE_SECONDS + 8
BEAT_DOWN_GRACE_SECONDS = BEAT_STALE_SECONDS + 4
# Health reads each schedule's 6 newest due runs (scheduler.health_reads.RUNS_READ): every 4 s,
# enough finished runs are in sight for the three failures that make it failing.
EVERY = timedelta(seconds=5)
FAILING_EVERY = timedelta(seconds=4)
# A waiting run turns its schedule late only while it is among the schedule's RUNS_READ newest
# due runs (scheduler.health_reads): so the oldest of those must be older than the start grace,
# (RUNS_READ - 1) runs of WAITING_EVERY, 20 s against the grace's 16.
WAITING_EVERY = timedelta(seconds=4)
# With beat stopped no run is claimed any more: those claimed ahead stay in sight, unsent.
BEAT_DOWN_EVERY = timedelta(seconds=2)
SCHEDULES = ("mon alpha", "mon bravo", "mon charlie")
EVALUATOR = [sys.executable, "manage.py", "evaluate", "--every", "1"]
FAILURE = "fails on purpose, every run"


@shared_task
def fails_every_run() -> None:
    """A task for this module's failing schedule; its worker loads it with --include."""
    raise RuntimeError(FAILURE)


FAILING_TASK = f"{__name__}.fails_every_run"
FAILING_WORKER = worker_argv("--include", __name__)


@pytest.fixture
def smtp():
    """A real SMTP server on loopback (aiosmtpd): the evaluator sends its alerts to it."""
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def monitored_env(app_env, smtp) -> dict:
    return {**app_env, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp.port), "ALERT_EMAILS": ALERTED,
            "WORKER_STALE_SECONDS": str(WORKER_STALE_SECONDS), "BEAT_STALE_SECONDS": str(BEAT_STALE_SECONDS)}


@pytest.fixture
def webhook():
    """A loopback HTTP server (not 127.0.0.1, as a webhook receiver elsewhere would be) answering 200."""
    server = PageServer("127.0.0.8")
    server.pages["/alerts"] = lambda handler: handler.reply(200, b"ok")
    yield server
    server.shutdown()
    server.server_close()


def subjects(smtp) -> list[str]:
    return [message["Subject"] for _, message in smtp.handler.received]


def mail_with(smtp, subject: str):
    found = [message for _, message in smtp.handler.received if message["Subject"] == subject]
    return found[0] if found else None


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def heartbeat_schedules(*, grace: int, every: timedelta = EVERY) -> list:
    return [with_policy(interval_task(name, every), start_grace_seconds=grace) for name in SCHEDULES]


def states() -> dict[str, str]:
    return dict(ScheduleHealth.objects.values_list("task__name", "state"))


def system_state(part: str) -> str | None:
    return SystemHealth.objects.filter(part=part).values_list("state", flat=True).first()


def start_worker_and_beat(start_process, env: dict, tmp_path, *, worker=None):
    """Worker and beat first, the evaluator once both have recorded that they are alive: an
    evaluator watching for longer than the staleness with no heartbeat yet rightly says down."""
    worker_process = start_process("worker", worker or worker_argv(), **env)
    beat = start_process("beat", celery_argv("beat", "--pidfile", str(tmp_path / "beat.pid")), **env)
    wait_until(lambda: BeatHeartbeat.objects.exists() and WorkerHeartbeat.objects.exists(), timeout=60,
               what="beat and the worker to record that they are alive")
    evaluator = start_process("evaluator", EVALUATOR, **env)
    return worker_process, beat, evaluator


def wait_all_up(names=SCHEDULES, *, timeout: float = 40) -> None:
    wait_until(lambda: system_state("beat") == State.UP and system_state("workers") == State.UP
               and all(states().get(name) == State.UP for name in names), timeout=timeout,
               what=lambda: f"beat, workers and schedules up (system: {list(SystemHealth.objects.all())}, "
                            f"schedules: {states()})")


def flips_of(name: str):
    return Flip.objects.filter(schedule__name=name).order_by("at", "id")


def schedule_deliveries():
    return AlertDelivery.objects.filter(flip__subject=Flip.Subject.SCHEDULE)


def kill(process) -> None:
    process.signal_group(signal.SIGKILL)
    process.process.wait(timeout=10)


def test_no_workers_one_alert_naming_the_waiting_schedules_then_one_recovery(
        start_process, monitored_env, smtp, tmp_path):
    # Every WAITING_EVERY, well within the worker's staleness: each schedule has a run waiting
    # when the "no workers" alert is written (every 5 s, the alert often came first and rightly
    # said "none yet").
    assert WAITING_EVERY.total_seconds() <= WORKER_STALE_SECONDS / 2
    assert WORKER_STALE_SECONDS < NO_WORKER_GRACE_SECONDS < (RUNS_READ - 1) * WAITING_EVERY.total_seconds()
    heartbeat_schedules(grace=NO_WORKER_GRACE_SECONDS, every=WAITING_EVERY)
    worker, _beat, _evaluator = start_worker_and_beat(start_process, monitored_env, tmp_path)
    wait_all_up()
    assert smtp.handler.received == []  # new → up is no news

    kill(worker)
    down = f"{PREFIX}Workers: up → down"
    message = wait_until(lambda: mail_with(smtp, down), timeout=WORKER_STALE_SECONDS + 15,
                         what=lambda: f"the mail {down!r} (received: {subjects(smtp)})")
    assert message["To"] == ALERTED
    body = text_of(message)
    assert "Runs waiting for a worker: " in body
    waiting = body.split("Runs waiting for a worker: ", 1)[1].split(".")[0]
    assert all(name in waiting for name in SCHEDULES), body
    assert f"Every one of the {len(SCHEDULES)} enabled schedules waits" in body

    # Their runs wait past the start grace: each schedule turns late (then down), each change a
    # flip, each covered by the one "no workers" alert.
    def late_and_covered() -> bool:
        for name in SCHEDULES:
            bad = flips_of(name).filter(to_state__in=[State.LATE, State.DOWN])
            if not bad.exists() or states().get(name) not in (State.LATE, State.DOWN):
                return False
        return True

    wait_until(late_and_covered, timeout=NO_WORKER_GRACE_SECONDS + 20,
               what=lambda: f"every schedule late or down (schedules: {states()})")
    time.sleep(1.5)  # a pass or two more: nothing else is sent
    for name in SCHEDULES:
        bad = list(flips_of(name).filter(to_state__in=[State.LATE, State.DOWN]))
        assert bad and all(flip.cause == Cause.NOT_STARTED for flip in bad), [(f.title, f.cause) for f in bad]
        assert {flip.silenced for flip in bad} == {"covered by the “no workers” alert"}
    assert not schedule_deliveries().exists()
    assert subjects(smtp) == [down]
    assert system_state("beat") == State.UP

    start_process("worker-2", worker_argv(), **monitored_env)
    up = f"{PREFIX}Workers: down → up"
    wait_until(lambda: mail_with(smtp, up), timeout=60, what=lambda: f"the mail {up!r} (received: {subjects(smtp)})")
    # The runs that waited are run, and every schedule is up again, its recovery not alerted
    # either: nobody was told it was late.
    wait_all_up(timeout=30)
    time.sleep(1.5)
    assert subjects(smtp) == [down, up]
    assert not schedule_deliveries().exists()
    workers = Flip.objects.filter(subject=Flip.Subject.WORKERS).order_by("at")
    assert [(f.from_state, f.to_state, f.silenced) for f in workers] == [("up", "down", ""), ("down", "up", "")]
    assert sorted(AlertDelivery.objects.values_list("flip__subject", "channel", "recipient", "status")) == [
        ("workers", "email", ALERTED, "sent"), ("workers", "email", ALERTED, "sent")]
    for name in SCHEDULES:
        assert flips_of(name).last().to_state == State.UP
        assert ScheduleRun.objects.filter(schedule__name=name, status=ScheduleRun.Status.SUCCEEDED).exists()


def test_beat_down_one_alert_and_the_schedules_unknown(start_process, monitored_env, smtp, tmp_path):
    heartbeat_schedules(grace=BEAT_DOWN_GRACE_SECONDS, every=BEAT_DOWN_EVERY)
    _worker, beat, _evaluator = start_worker_and_beat(start_process, monitored_env, tmp_path)
    wait_all_up()

    kill(beat)
    down = f"{PREFIX}Beat: up → down"
    message = wait_until(lambda: mail_with(smtp, down), timeout=BEAT_STALE_SECONDS + 15,
                         what=lambda: f"the mail {down!r} (received: {subjects(smtp)})")
    assert "no beat heartbeat since" in text_of(message)
    # Their slots pass without being sent: unknown (the product could not see), not late or down.
    wait_until(lambda: all(states().get(name) == State.UNKNOWN for name in SCHEDULES),
               timeout=BEAT_DOWN_GRACE_SECONDS + 15, what=lambda: f"every schedule unknown (schedules: {states()})")
    time.sleep(1.5)
    for name in SCHEDULES:
        health = ScheduleHealth.objects.get(task__name=name)
        assert health.cause == Cause.BEAT_DOWN and "beat is down" in health.why
        assert [(f.from_state, f.to_state) for f in flips_of(name)] == [("up", "unknown")]
        assert flips_of(name).get().silenced.startswith("not alerted: unknown")
    assert not schedule_deliveries().exists()
    assert subjects(smtp) == [down]
    # The worker is alive all along: beat's silence is not taken for the workers'.
    assert system_state("workers") == State.UP


def test_a_task_failing_run_after_run_is_alerted_failing_once_by_mail_and_webhook(
        start_process, monitored_env, smtp, webhook, tmp_path):
    name = "mon always fails"
    schedule = interval_task(name, FAILING_EVERY, task=FAILING_TASK)
    env = {**monitored_env, "ALERT_WEBHOOK_URL": webhook.url("127.0.0.8", "/alerts"),
           "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", "WEBHOOK_ALLOWED_PORTS": str(webhook.port)}
    start_worker_and_beat(start_process, env, tmp_path, worker=FAILING_WORKER)

    failing = {f"{PREFIX}{name}: up → failing", f"{PREFIX}{name}: new → failing"}
    wait_until(lambda: any(subject in failing for subject in subjects(smtp)), timeout=40,
               what=lambda: f"a failing mail (received: {subjects(smtp)}, schedule: {states()})")
    wait_until(lambda: webhook.posted, timeout=15, what="the webhook's POST")
    runs = ScheduleRun.objects.filter(schedule=schedule, status=ScheduleRun.Status.FAILED)
    # It goes on failing: two more failures, and no more alerts.
    failed_at_alert = runs.count()
    assert failed_at_alert >= 3
    wait_until(lambda: runs.count() >= failed_at_alert + 2, timeout=30, what="two more failed runs")
    time.sleep(1.5)

    assert len(smtp.handler.received) == 1, subjects(smtp)
    [(_, message)] = smtp.handler.received
    assert message["Subject"] in failing and message["To"] == ALERTED
    body = text_of(message)
    assert re.search(r"\b([3-9]|\d\d+) failed run\(s\) in a row", body), body
    assert FAILURE in body
    [(path, posted)] = webhook.posted
    assert path == "/alerts"
    payload = json.loads(posted)
    assert payload["to"] == "failing" and payload["from"] in ("up", "new")
    assert payload["subject"] == "schedule" and payload["schedule"] == name
    assert payload["cause"] == "failed" and payload["type"] == "ALERT" and payload["reminder"] is False
    health = ScheduleHealth.objects.get(task=schedule)
    assert FAILURE in ScheduleRun.objects.get(id=health.run_id).error
    assert health.state == State.FAILING and health.cause == Cause.FAILED
    assert sorted(AlertDelivery.objects.values_list("channel", "status")) == [("email", "sent"), ("webhook", "sent")]
    assert system_state("workers") == State.UP and system_state("beat") == State.UP
