"""The worker's side of the ledger (scheduler.worker): a run records its start, outcome and duration, once."""

import base64
import json
import threading
import uuid
from datetime import datetime, timedelta

import pytest
from celery import shared_task
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler.messages import RUN_HEADER, SCHEDULED_FOR_HEADER
from scheduler.models import ScheduleRun, WorkerHeartbeat
from scheduler.tasks import heartbeat, run_outcome_write
from scheduler.worker import (
    DATABASE_WAIT_SECONDS,
    LEASE_WAITS,
    LEASE_WAITS_HEADER,
    OUTCOME_TASK,
    Skipped,
    run_finish,
    run_start,
    scheduled_for,
)
from scheduler.worker_leases import LeaseRenewer
from shared.claims import Claim
from tests.builders import interval_task, ledger_run, with_policy
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db


@shared_task
def fails_on_purpose():
    raise RuntimeError("the source database is gone")


@shared_task(bind=True)
def reports_its_slot(self):
    return scheduled_for(self.request).isoformat()


@shared_task
def names_the_other_threads() -> list[tuple[int, str]]:
    # Names as well: a thread that ended leaves its ident to the next one.
    return sorted((thread.ident, thread.name) for thread in threading.enumerate()
                  if thread is not threading.current_thread())


def claimed_run(task, *, slot=None, **fields) -> ScheduleRun:
    return ledger_run(task, slot, **{"status": "claimed", "claimed_at": timezone.now(), **fields})


def deliver(celery_task, run: ScheduleRun, **headers):
    """What a worker does with the message beat published for `run` (with `headers` added)."""
    headers = {RUN_HEADER: run.id, SCHEDULED_FOR_HEADER: run.scheduled_for.isoformat(), **headers}
    return celery_task.apply(task_id=run.task_id, headers=headers)


def test_a_run_records_its_worker_start_finish_and_output():
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    deliver(heartbeat, run)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.worker
    assert run.started_at <= run.finished_at and run.duration is not None
    assert run.output["beats"] == 1 and run.lease_until is None


def test_a_failing_run_records_the_error():
    task = interval_task("fails", timedelta(minutes=1))
    run = claimed_run(task)
    result = deliver(fails_on_purpose, run)
    assert result.failed()
    run.refresh_from_db()
    assert run.status == "failed" and "RuntimeError: the source database is gone" in run.error


def test_a_run_delivered_twice_runs_once():
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)))
    deliver(heartbeat, run)
    second = deliver(heartbeat, run)
    # Ignored: the second copy leaves the first one's task result as it is.
    assert second.state == "IGNORED"
    assert WorkerHeartbeat.objects.get().beats == 1


def test_the_task_knows_the_slot_it_runs_for_not_the_workers_clock():
    slot = timezone.now() - timedelta(hours=5)
    run = claimed_run(interval_task("slot", timedelta(minutes=1)), slot=slot)
    assert deliver(reports_its_slot, run).result == slot.isoformat()


def test_overlap_skip_records_a_skipped_run_while_the_previous_one_runs():
    task = with_policy(interval_task("long job", timedelta(minutes=1)), overlap="skip")
    now = timezone.now()
    claimed_run(task, slot=now - timedelta(minutes=1), status="running", worker="celery@other",
                started_at=now, lease_until=now + timedelta(seconds=60))
    run = claimed_run(task, slot=now)
    deliver(heartbeat, run)
    run.refresh_from_db()
    assert run.status == "skipped" and "still running on celery@other" in run.reason
    assert not WorkerHeartbeat.objects.exists()


def test_a_run_whose_worker_was_killed_does_not_block_its_schedule_once_the_lease_lapses():
    task = with_policy(interval_task("long job", timedelta(minutes=1)), overlap="skip")
    now = timezone.now()
    claimed_run(task, slot=now - timedelta(minutes=1), status="running", worker="celery@killed",
                started_at=now - timedelta(minutes=3), lease_until=now - timedelta(seconds=1))
    run = claimed_run(task, slot=now)
    deliver(heartbeat, run)
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_overlap_allow_lets_runs_of_one_schedule_overlap():
    task = interval_task("parallel", timedelta(minutes=1))
    now = timezone.now()
    claimed_run(task, slot=now - timedelta(minutes=1), status="running", lease_until=now + timedelta(seconds=60))
    run = claimed_run(task, slot=now)
    deliver(heartbeat, run)
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_a_task_called_without_a_run_is_not_recorded():
    heartbeat.apply()
    assert not ScheduleRun.objects.exists() and WorkerHeartbeat.objects.get().beats == 1


def test_the_copy_a_stopped_beat_sent_is_dropped_once_another_beat_sent_the_run_again():
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)))
    stale_copy_id = run.task_id
    ScheduleRun.objects.filter(id=run.id).update(task_id=str(uuid.uuid4()), status="sent")
    headers = {RUN_HEADER: run.id, SCHEDULED_FOR_HEADER: run.scheduled_for.isoformat()}
    assert heartbeat.apply(task_id=stale_copy_id, headers=headers).state == "IGNORED"
    run.refresh_from_db()
    assert run.status == "sent" and not WorkerHeartbeat.objects.exists()


def test_a_copy_delivered_while_another_worker_runs_the_run_waits_in_the_broker_not_in_a_worker(queue):
    now = timezone.now()
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="running",
                      worker="celery@other:4242:cafe", started_at=now, lease_until=now + timedelta(seconds=30))

    assert deliver(heartbeat, run).state == "IGNORED"

    run.refresh_from_db()
    assert (run.status, run.worker) == ("running", "celery@other:4242:cafe")
    (raw,) = queue.lrange("default", 0, -1)
    again = json.loads(raw)["headers"]
    assert (again["id"], again[RUN_HEADER], again[LEASE_WAITS_HEADER]) == (run.task_id, run.id, 1)
    # Sent again for just after the other worker's lease would lapse, had that worker been killed.
    eta = datetime.fromisoformat(again["eta"])
    assert run.lease_until < eta <= run.lease_until + timedelta(seconds=5)
    assert not WorkerHeartbeat.objects.exists()


def test_a_copy_that_waited_its_turns_is_dropped_while_the_other_worker_still_renews(queue):
    now = timezone.now()
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="running",
                      worker="celery@other:4242:cafe", started_at=now, lease_until=now + timedelta(seconds=30))

    assert deliver(heartbeat, run, **{LEASE_WAITS_HEADER: LEASE_WAITS}).state == "IGNORED"

    assert queue.llen("default") == 0
    run.refresh_from_db()
    assert run.status == "running" and not WorkerHeartbeat.objects.exists()


def test_the_copy_takes_the_run_over_once_the_killed_workers_lease_has_lapsed(queue):
    now = timezone.now()
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="running",
                      worker="celery@killed:4242:cafe", started_at=now - timedelta(minutes=2),
                      lease_until=now - timedelta(seconds=1))

    deliver(heartbeat, run, **{LEASE_WAITS_HEADER: 1})

    run.refresh_from_db()
    assert run.status == "succeeded" and run.worker != "celery@killed:4242:cafe"
    assert WorkerHeartbeat.objects.get().beats == 1 and queue.llen("default") == 0


class DatabaseDown:
    """Django's own hook on the connection (execute_wrapper) refusing every query while `down`,
    as a PostgreSQL that stopped answering does."""

    def __init__(self, down: bool = True) -> None:
        self.down = down

    def __call__(self, execute, sql, params, many, context):
        if self.down:
            raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")
        return execute(sql, params, many, context)


OUTAGE = DatabaseDown(down=False)


@shared_task
def loses_the_database_at_its_end():
    OUTAGE.down = True
    return {"rows": 3}


@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_cannot_reach_the_ledger_comes_back_later_instead_of_being_acknowledged(queue):
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    with connection.execute_wrapper(DatabaseDown()):
        assert deliver(heartbeat, run).state == "IGNORED"
    (raw,) = queue.lrange("default", 0, -1)
    again = json.loads(raw)["headers"]
    assert (again["id"], again[RUN_HEADER]) == (run.task_id, run.id)
    eta = datetime.fromisoformat(again["eta"])
    assert timezone.now() < eta <= timezone.now() + timedelta(seconds=DATABASE_WAIT_SECONDS)
    run.refresh_from_db()
    assert run.status == "sent" and not WorkerHeartbeat.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_outcome_that_cannot_be_written_is_kept_in_a_message_and_written_once_the_database_answers(queue):
    run = claimed_run(interval_task("loses", timedelta(minutes=1)), status="sent")
    OUTAGE.down = False
    with connection.execute_wrapper(OUTAGE):
        deliver(loses_the_database_at_its_end, run)
    OUTAGE.down = False
    (raw,) = queue.lrange("default", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == OUTCOME_TASK
    assert ScheduleRun.objects.get(pk=run.pk).status == "running"

    kept = json.loads(base64.b64decode(message["body"]))[1]
    assert kept["task_id"] == run.task_id and kept["started_at"]

    run_outcome_write.apply(kwargs=kept)

    run.refresh_from_db()
    assert (run.status, run.output, run.lease_until) == ("succeeded", {"rows": 3}, None)
    assert timedelta(0) <= run.started_at - datetime.fromisoformat(kept["started_at"]) < timedelta(seconds=1)


def test_an_unopposed_run_starts_in_one_statement():
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    with CaptureQueriesContext(connection) as queries:
        assert run_start(run_id=run.id, task_id=run.task_id, worker="celery@here:1:ab").run
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["UPDATE"]
    run.refresh_from_db()
    assert (run.status, run.worker) == ("running", "celery@here:1:ab") and run.lease_until > timezone.now()


def test_runs_one_after_another_have_their_leases_renewed_by_one_thread_not_one_each():
    task = interval_task("threads", timedelta(minutes=1))
    seen = [deliver(names_the_other_threads, claimed_run(task, slot=timezone.now() - timedelta(minutes=minutes))).result
            for minutes in (2, 1)]
    assert seen[0] == seen[1]


@pytest.mark.django_db(transaction=True)
def test_a_lease_is_renewed_while_its_run_executes_and_no_longer_once_it_ends():
    renewer = LeaseRenewer(Claim(holder_field="worker", until_field="lease_until", lasts=timedelta(seconds=3),
                                 renew_every=timedelta(seconds=0.5)))
    started = timezone.now()
    run = claimed_run(interval_task("long", timedelta(minutes=1)), status="running", worker="celery@here:1:ab",
                      started_at=started, lease_until=started + timedelta(seconds=3))

    def lease_until():
        return ScheduleRun.objects.get(id=run.id).lease_until

    # The renewer's passes as it makes them: whether each began once the block had ended, the
    # runs it renewed, and whether it is over.
    ended, passes, renew = threading.Event(), [], renewer._renew

    def noted_renew(held):
        noted = {"after": ended.is_set(), "runs": [run_id for run_id, _ in held], "done": False}
        passes.append(noted)
        try:
            renew(held)
        finally:
            noted["done"] = True

    renewer._renew = noted_renew
    with renewer.holding(run.id, "celery@here:1:ab"):
        wait_until(lambda: lease_until() > started + timedelta(seconds=4), timeout=30,
                   what=lambda: f"the lease renewed past {started + timedelta(seconds=4)}, now {lease_until()}")
    ended.set()
    # A pass that read the runs held just before the block ended may still renew the lease once,
    # after it: so the lease read at once is not the last word. Four passes of the renewer later,
    # once none is under way, it is.
    threading.Event().wait(2.2)
    wait_until(lambda: all(noted["done"] for noted in passes), timeout=30, what=lambda: f"the passes over: {passes}")
    seen, last = len(passes), lease_until()
    # Two passes more.
    threading.Event().wait(1.2)
    # At most that one pass renewed it after the block ended (a slow machine makes fewer passes,
    # never more renewals), and the lease stayed where the renewals left it.
    renewed_after = [noted for noted in passes if noted["after"] and run.id in noted["runs"]]
    assert len(renewed_after) <= 1, f"renewed once its run had ended: {passes}"
    assert lease_until() == last or any(run.id in noted["runs"] for noted in passes[seen:]), (last, lease_until())


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite lets one writer in at a time")
def test_of_two_deliveries_starting_a_run_at_once_one_starts_it():
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    ready, decisions = threading.Barrier(2), {}

    def start(worker: str) -> None:
        ready.wait()
        decisions[worker] = run_start(run_id=run.id, task_id=run.task_id, worker=worker).run
        connection.close()

    threads = [threading.Thread(target=start, args=(f"celery@w{index}:1:ab",)) for index in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(decisions.values()) == [False, True]
    assert ScheduleRun.objects.get(id=run.id).worker == next(w for w, started in decisions.items() if started)


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's commits wait for the disk")
@pytest.mark.django_db(transaction=True)
def test_a_runs_start_and_outcome_commit_without_waiting_for_the_disk_and_nothing_after_them_does():
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    with CaptureQueriesContext(connection) as queries:
        assert run_start(run_id=run.id, task_id=run.task_id, worker="celery@here:1:ab").run
        assert synchronous_commit() == "on"
        run_finish(run_id=run.id, worker="celery@here:1:ab", succeeded=True, output={"rows": 1})
        assert synchronous_commit() == "on"
    writes = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("UPDATE")]
    assert len(writes) == 2 and all("set_config('synchronous_commit', 'off', true)" in sql for sql in writes)
    run.refresh_from_db()
    assert (run.status, run.output, run.lease_until) == ("succeeded", {"rows": 1}, None)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's commits wait for the disk")
def test_inside_a_transaction_a_runs_start_leaves_the_transactions_commit_as_it_was():
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    assert run_start(run_id=run.id, task_id=run.task_id, worker="celery@here:1:ab").run
    assert synchronous_commit() == "on"


def test_a_run_whose_start_was_lost_with_the_database_still_gets_its_outcome():
    # What a crash of PostgreSQL leaves of a start committed without waiting for the disk: the
    # run as it was before it, sent and never started, while its delivery ran to the end.
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent")
    started = timezone.now() - timedelta(seconds=2)
    run_finish(run_id=run.id, worker="celery@here:1:ab", succeeded=False, error="boom", task_id=run.task_id,
               started_at=started)
    run.refresh_from_db()
    assert (run.status, run.worker, run.started_at, run.error) == ("failed", "celery@here:1:ab", started, "boom")
    assert run.finished_at > started


def test_a_retry_whose_start_was_lost_with_the_database_still_gets_its_outcome():
    # A retry is the same task id: its lost start leaves the run as the first delivery left it,
    # sent, with the first delivery's start.
    first_start = timezone.now() - timedelta(seconds=30)
    run = claimed_run(interval_task("heartbeat", timedelta(minutes=1)), status="sent", worker="celery@here:1:ab",
                      started_at=first_start)
    retry_start = timezone.now() - timedelta(seconds=1)
    run_finish(run_id=run.id, worker="celery@here:1:cd", succeeded=True, task_id=run.task_id, started_at=retry_start)
    run.refresh_from_db()
    assert (run.status, run.worker, run.started_at) == ("succeeded", "celery@here:1:cd", retry_start)


def test_an_outcome_never_lands_on_a_run_another_delivery_started_later_nor_on_one_closed():
    task = interval_task("heartbeat", timedelta(minutes=1))
    mine = timezone.now() - timedelta(seconds=20)
    later = {"worker": "celery@there:2:cd", "started_at": mine + timedelta(seconds=10)}
    taken_over = claimed_run(task, status="running", lease_until=timezone.now() + timedelta(seconds=60), **later)
    # The delivery that took the run over asked for a retry, which waits.
    retrying = claimed_run(task, slot=timezone.now() - timedelta(minutes=1), status="sent", **later)
    closed = claimed_run(task, slot=timezone.now() - timedelta(minutes=2), status="failed", error="lost")
    for run in (taken_over, retrying, closed):
        run_finish(run_id=run.id, worker="celery@here:1:ab", succeeded=True, task_id=run.task_id, started_at=mine)
    assert [ScheduleRun.objects.get(id=run.id).status for run in (taken_over, retrying, closed)] == [
        "running", "sent", "failed"]


@shared_task
def finds_nothing_to_do():
    return Skipped("the report was disabled")


def test_a_run_that_had_nothing_to_do_is_recorded_skipped_with_its_reason_after_what_was_there():
    run = claimed_run(interval_task("nothing", timedelta(minutes=1)), status="sent", reason="Sent again. ")
    assert deliver(finds_nothing_to_do, run).result == {"skipped": "the report was disabled"}
    run.refresh_from_db()
    assert (run.status, run.reason, run.lease_until) == ("skipped", "Sent again. the report was disabled", None)
    assert run.output == {"skipped": "the report was disabled"} and run.finished_at


@shared_task(bind=True)
def waits_its_turn(self):
    self.run_again_later(countdown=0, kwargs={})


def test_a_run_sent_again_for_later_is_handed_back_before_its_copy_is_published(queue, monkeypatch):
    run = claimed_run(interval_task("waits its turn", timedelta(minutes=1)), status="sent")
    seen_when_published = []
    signature_from_request = waits_its_turn.signature_from_request

    def noting(*args, **kwargs):
        signature = signature_from_request(*args, **kwargs)
        publish = signature.apply_async

        def apply_async(**options):
            seen_when_published.append(ScheduleRun.objects.values_list("status", "lease_until").get(id=run.id))
            return publish(**options)

        signature.apply_async = apply_async
        return signature

    monkeypatch.setattr(waits_its_turn, "signature_from_request", noting)

    assert deliver(waits_its_turn, run).state == "IGNORED"

    # A copy due at once, taken by another process as soon as it is published, finds the run
    # sent, not running under this delivery's lease (which it would wait out).
    assert seen_when_published == [("sent", None)]
    assert queue.llen("default") == 1


def test_a_run_whose_copy_could_not_be_published_is_still_its_deliverys_and_fails_there(queue, monkeypatch):
    from kombu.exceptions import OperationalError as BrokerDown

    run = claimed_run(interval_task("waits its turn", timedelta(minutes=1)), status="sent")
    signature_from_request = waits_its_turn.signature_from_request

    def unpublishable(*args, **kwargs):
        signature = signature_from_request(*args, **kwargs)

        def apply_async(**options):
            raise BrokerDown("the broker went away")

        signature.apply_async = apply_async
        return signature

    monkeypatch.setattr(waits_its_turn, "signature_from_request", unpublishable)

    assert deliver(waits_its_turn, run).state == "FAILURE"

    run.refresh_from_db()
    assert run.status == "failed" and "the broker went away" in run.error and run.lease_until is None
    assert queue.llen("default") == 0
