"""Sent runs whose message Redis lost (restarted without its data): found by reading what the
broker holds, twice, then sent again under a new task id or recorded with the reason. Against a
real Redis, with messages published and taken by kombu itself."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Consumer

from scheduler.broker import task_ids_held
from scheduler.claim import due_runs_claim
from scheduler.models import ScheduleRun
from scheduler.publish import runs_publish
from scheduler.recover import VanishedRuns
from scheduler.sync import schedules_sync
from tests.builders import interval_task, with_policy
from wiring.celery import app as celery_app

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


@pytest.fixture
def broker(settings, queue, redis_url):
    settings.CELERY_BROKER_URL = redis_url
    for step in ("3", "6", "9"):
        queue.delete(f"default\x06\x16{step}")
    queue.delete("unacked", "unacked_index")
    return queue


@pytest.fixture
def finder() -> VanishedRuns:
    """Reads at every call; a run counts once two readings 0.2 s apart miss it."""
    found = VanishedRuns()
    found.CHECK_EVERY_SECONDS = 0
    found.CONFIRM_AFTER_SECONDS = 0.2
    return found


def sent_run(name: str = "nightly export", *, deadline_seconds: int = 3600, sent_ago=10 * MINUTE) -> ScheduleRun:
    """A run of a schedule claimed and published for real, then dated back as sent `sent_ago`."""
    with_policy(interval_task(name, 5 * MINUTE), starting_deadline_seconds=deadline_seconds)
    now = timezone.now()
    schedules_sync(now=now - 5 * MINUTE)
    dispatches, _ = due_runs_claim(now=now, node="beat-1")
    with celery_app.producer_or_acquire() as producer:
        assert runs_publish(dispatches, app=celery_app, producer=producer, node="beat-1") == dispatches
    ScheduleRun.objects.filter(id=dispatches[0].run_id).update(sent_at=now - sent_ago)
    return ScheduleRun.objects.get(id=dispatches[0].run_id)


def twice(finder: VanishedRuns) -> list:
    """Two readings of the broker, far enough apart to confirm what both miss."""
    assert finder.recover(now=timezone.now(), node="beat-2") == []
    time.sleep(finder.CONFIRM_AFTER_SECONDS + 0.05)
    return finder.recover(now=timezone.now(), node="beat-2")


def test_a_run_whose_message_waits_in_its_queue_is_left_alone(broker, finder):
    run = sent_run()
    assert run.task_id in task_ids_held()

    assert twice(finder) == []
    assert ScheduleRun.objects.get(id=run.id).status == ScheduleRun.Status.SENT


def test_a_message_a_worker_holds_unacknowledged_counts_as_held(broker):
    run = sent_run()
    with celery_app.connection_for_read() as connection:
        taken = []
        consumer = Consumer(connection.channel(), queues=[celery_app.amqp.queues["default"]], accept=["json"],
                            callbacks=[lambda body, message: taken.append(message)])
        consumer.consume()
        connection.drain_events(timeout=5)
        assert len(taken) == 1 and broker.llen("default") == 0
        assert run.task_id in task_ids_held()


def test_a_message_sent_with_a_priority_is_found_in_its_priority_list(broker):
    result = celery_app.send_task("scheduler.tasks.heartbeat", queue="default", priority=5)
    assert broker.llen("default\x06\x163") == 1
    assert result.id in task_ids_held()


def test_a_run_whose_message_vanished_is_sent_again_under_a_new_task_id_with_the_reason(broker, finder):
    run = sent_run()
    broker.delete("default")  # what a Redis restarted without its data holds

    resent = twice(finder)

    assert [dispatch.run_id for dispatch in resent] == [run.id]
    again = ScheduleRun.objects.get(id=run.id)
    assert (again.status, again.claimed_by) == (ScheduleRun.Status.CLAIMED, "beat-2")
    assert again.task_id == resent[0].task_id != run.task_id
    assert "its message was no longer in the broker" in again.reason and "sent again at" in again.reason
    with celery_app.producer_or_acquire() as producer:
        assert runs_publish(resent, app=celery_app, producer=producer, node="beat-2") == resent
    assert ScheduleRun.objects.get(id=run.id).status == ScheduleRun.Status.SENT
    assert resent[0].task_id in task_ids_held()


def test_one_reading_that_misses_a_message_is_not_enough(broker, finder):
    run = sent_run()
    broker.delete("default")
    finder.CONFIRM_AFTER_SECONDS = 3600

    for _ in range(2):  # a worker's pop was read between the list and the hash, say
        assert finder.recover(now=timezone.now(), node="beat-2") == []
    assert ScheduleRun.objects.get(id=run.id).task_id == run.task_id


def test_a_vanished_run_past_its_starting_deadline_is_recorded_as_not_enqueued(broker, finder):
    run = sent_run(deadline_seconds=60, sent_ago=10 * MINUTE)
    ScheduleRun.objects.filter(id=run.id).update(scheduled_for=run.scheduled_for - 10 * MINUTE)
    broker.delete("default")

    assert twice(finder) == []
    lost = ScheduleRun.objects.get(id=run.id)
    assert lost.status == ScheduleRun.Status.NOT_ENQUEUED and lost.finished_at is not None
    assert "no longer in the broker" in lost.reason and "starting deadline of 60 s has passed" in lost.reason


def test_a_run_sent_within_its_start_grace_is_not_read_for(broker, finder):
    run = sent_run(sent_ago=timedelta(seconds=5))
    broker.delete("default")

    assert twice(finder) == []
    assert ScheduleRun.objects.get(id=run.id).status == ScheduleRun.Status.SENT
