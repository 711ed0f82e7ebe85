"""The worker's side of the run ledger: every task sent by beat records its own run.

`RecordedTask` is the base of every task of the app (wiring/celery.py names it as the app's
`task_cls`, a string because the app exists before Django's models load), so no task needs to
remember to record anything. For a message that carries a run id it marks the run started,
enforces the schedule's overlap policy, keeps a lease on the run while it executes, and
records the outcome, the duration and the error. Tasks called any other way run unchanged.
"""

import json
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import datetime

from celery import Task, current_app
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from django.core.serializers.json import DjangoJSONEncoder
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from scheduler.messages import RUN_HEADER, RUN_KIND_HEADER, SCHEDULED_FOR_HEADER
from scheduler.models import SchedulePolicy, ScheduleRun, ScheduleState
from scheduler.policy import policy_of
from scheduler.worker_leases import RUN_LEASE, RUN_LEASES
from shared.claims import holder_name
from shared.compiled_updates import CompiledUpdate, param

logger = logging.getLogger(__name__)

def _run_header(request, name: str):
    """One of the run's headers (scheduler.messages) on a task's `request`; None without it (a
    task not sent by beat or "run now", or called directly)."""
    return (request.headers or {}).get(name) if request else None


def run_id_of(request) -> int | None:
    """The ledger run a task's `request` executes, if beat or "run now" sent it."""
    value = _run_header(request, RUN_HEADER)
    return int(value) if value is not None else None


def run_kind_of(request) -> str | None:
    """The kind of ledger run (ScheduleRun.Kind) a task's `request` executes, if beat or "run
    now" sent it."""
    return _run_header(request, RUN_KIND_HEADER)


def scheduled_for(request) -> datetime:
    """The slot a task runs for (its `request`), or now when it was not sent by beat.

    Jobs compute "the day this is for" from this, never from the worker's clock, so a run
    delivered late after an outage still covers the slot it was due for.
    """
    value = _run_header(request, SCHEDULED_FOR_HEADER)
    return parse_datetime(value) if value else timezone.now()


class JobFailed(Exception):
    """Raised by a job whose run failed although it has an output to show (what a fetch found, how
    many were sent): the ledger records the run failed, with this message as its error and
    `output` as its output."""

    def __init__(self, message: str, *, output=None) -> None:
        super().__init__(message)
        self.output = output


class Skipped(dict):
    """What a job returns when its run had nothing to do (its report or source was deleted or
    disabled after the message was sent, or "Run now" was pressed on a disabled one): the ledger
    records the run skipped with `reason`, not succeeded, and health reads it as neither a
    success nor a failure. A dict, so Celery stores it as the task's result like any other."""

    def __init__(self, reason: str) -> None:
        super().__init__(skipped=reason)
        self.reason = reason


class RunAgainLater(Ignore):
    """This delivery was sent again for later (RecordedTask.run_again_later) and ends here: like
    Celery's Ignore, nothing is stored for it, and the ledger's run waits as sent."""


def _run_hand_back(run_id: int, worker: str) -> int:
    """Give run `run_id` back as sent, for its next delivery to start at once; 0 when `worker`
    no longer held it."""
    return RUN_LEASE.release(ScheduleRun.objects.filter(id=run_id, status=ScheduleRun.Status.RUNNING),
                             holder=worker, status=ScheduleRun.Status.SENT)


def _run_take_back(run_id: int, worker: str) -> int:
    """Run `run_id` as `worker` handed it back (_run_hand_back), running under its lease again,
    unless another delivery took it meanwhile."""
    return RUN_LEASE.take(ScheduleRun.objects.filter(id=run_id, status=ScheduleRun.Status.SENT,
                                                     worker=worker),
                          holder=worker, now=timezone.now(), free=Q(lease_until__isnull=True),
                          status=ScheduleRun.Status.RUNNING)


def run_note(*, run_id: int, output) -> None:
    """Show `output` on a run that is waiting to be tried again (it says why, and when)."""
    ScheduleRun.objects.filter(id=run_id).exclude(status__in=ScheduleRun.FINISHED).update(output=output)


# A copy of a run delivered while another delivery holds the run's live lease waits for it to
# lapse this many times at most (the header counts them). A killed worker's lease lapses within
# one wait; a live one keeps renewing, and the copy is then dropped.
LEASE_WAITS = 2
LEASE_WAITS_HEADER = "ledger_lease_waits"


@dataclass(frozen=True)
class StartDecision:
    run: bool
    reason: str = ""
    # Set when another delivery holds a live lease on the run: when that lease lapses.
    lease_until: datetime | None = None


def run_start(*, run_id: int, task_id: str, worker: str) -> StartDecision:
    """Mark the run started, unless the overlap policy or an earlier delivery says not to."""
    def start() -> StartDecision:
        now = timezone.now()
        if _START_UNOPPOSED(run_id=run_id, task_id=task_id, worker=worker, now=now):
            return StartDecision(True)
        return _try_start(run_id=run_id, task_id=task_id, worker=worker, now=now)

    return with_retries(start)


# What the database raises when it cannot be reached or its connection dropped (psycopg's
# closed connection is an InterfaceError).
DATABASE_DOWN = (OperationalError, InterfaceError)
# A delivery that cannot reach the ledger comes back this much later, as a message, until the
# database answers; a finished run's outcome is handed to OUTCOME_TASK, which does the same.
DATABASE_WAIT_SECONDS = 10
OUTCOME_TASK = "scheduler.tasks.run_outcome_write"


def with_retries(write, attempts: int = 4):
    """A ledger write, retried on a passing database error (a locked SQLite file, a dropped
    connection): losing it would leave the run's outcome unrecorded."""
    for attempt in range(attempts):
        try:
            return write()
        except DATABASE_DOWN:
            if attempt == attempts - 1:
                raise
            connection.close()
            time.sleep(0.5 * 2**attempt)


# Free when not started yet; a running one only once its worker's lease lapsed.
WAITING = (ScheduleRun.Status.CLAIMED, ScheduleRun.Status.SENT)


def _run_taking(rows, *, worker, now) -> tuple:
    """The UPDATE that starts the run of `rows` for `worker` if it is free (not started yet) or
    its lease lapsed (RUN_LEASE.taking; `worker` and `now` may be Params)."""
    return RUN_LEASE.taking(rows.filter(status__in=[*WAITING, ScheduleRun.Status.RUNNING]), holder=worker, now=now,
                            free=Q(status__in=WAITING), status=ScheduleRun.Status.RUNNING, started_at=now)


def _run_take(rows, *, worker: str, now: datetime) -> bool:
    rows, values = _run_taking(rows, worker=worker, now=now)
    return bool(rows.update(**values))


def _start_unopposed():
    """Start the run in one statement when nothing can stand in its way: the delivery of its
    task id, free (or its lease lapsed), of a schedule that does not skip overlapping runs. Almost
    every run is one; the others (and the reason a run does not start) are _try_start's, which
    reads the run and takes the schedule's lock in a transaction, four round trips to this one.

    Compiled once (shared.compiled_updates), and committed without waiting for the disk:
    PostgreSQL's WAL writer flushes it within 0.6 s, and sooner any commit that waits for the
    disk (the task result of a short run). A crash of PostgreSQL itself inside that window loses
    the start, and until the outcome the run reads as it was, sent: its delivery, unacknowledged,
    is still in the broker, so it is not sent again, and run_finish writes the outcome on it. In
    that window the run's lease is not renewed (worker_leases logs it), an overlapping run of a
    schedule that skips overlaps is not held back, and a copy delivered again under its task id
    could start it. If the outcome is lost too (a run shorter than the window, then the crash),
    its message is acknowledged and the lost-message check sends the run again. A flushed start
    cost each run 0.2-4.5 ms (bench/bench_worker.py) for a window that needs the database server
    to crash within 0.6 s of it.
    """
    # The conditions on the run are on the updated row itself, not in a join or subquery of it:
    # PostgreSQL checks those again once a concurrent take's lock is released, so of two
    # deliveries only one starts the run.
    skips = SchedulePolicy.objects.filter(task_id=OuterRef("schedule_id"), overlap=SchedulePolicy.Overlap.SKIP)
    rows = ScheduleRun.objects.filter(~Exists(skips), id=param(ScheduleRun, "id", "run_id"),
                                      task_id=param(ScheduleRun, "task_id"))
    return _run_taking(rows, worker=param(ScheduleRun, "worker"), now=param(ScheduleRun, "started_at", "now"))


_START_UNOPPOSED = CompiledUpdate(_start_unopposed, unflushed=True)


def _try_start(*, run_id: int, task_id: str, worker: str, now: datetime) -> StartDecision:
    with transaction.atomic():
        run = ScheduleRun.objects.select_related("schedule__scheduler_policy").filter(id=run_id).first()
        if run is None:
            return StartDecision(False, "its run record is gone")
        if run.task_id != task_id:
            # A beat that took over a stranded run sends it under a new task id; this is the
            # copy the stopped beat may have sent before it died.
            return StartDecision(False, "the run was sent again under another task id")
        if run.status == ScheduleRun.Status.RUNNING and run.lease_until and not RUN_LEASE.is_stale(run, now=now):
            return StartDecision(False, f"another delivery of this run is running it on {run.worker}",
                                 lease_until=run.lease_until)
        if run.status in ScheduleRun.FINISHED:
            return StartDecision(False, f"the run is already {run.get_status_display().lower()}")
        if run.schedule_id is not None and policy_of(run.schedule).overlap == SchedulePolicy.Overlap.SKIP:
            # The schedule's state row is the lock that makes "is another run going?" and
            # "then I start" one step: two starts of one schedule never both pass.
            list(ScheduleState.objects.select_for_update().filter(task_id=run.schedule_id))
            busy = (ScheduleRun.objects.filter(RUN_LEASE.live(now), schedule_id=run.schedule_id,
                                               status=ScheduleRun.Status.RUNNING).exclude(id=run_id).first())
            if busy:
                reason = (f"Skipped by the overlap policy: the run for {busy.scheduled_for.isoformat()} "
                          f"was still running on {busy.worker}.")
                ScheduleRun.objects.filter(id=run_id, status__in=WAITING).update(
                    status=ScheduleRun.Status.SKIPPED, finished_at=now, reason=reason)
                return StartDecision(False, reason)
        if _run_take(ScheduleRun.objects.filter(id=run_id), worker=worker, now=now):
            return StartDecision(True)
        return StartDecision(False, "another delivery took the run")


def json_safe(output):
    """`output` if the ledger's JSON column can hold it, else its repr()."""
    try:
        json.dumps(output, cls=DjangoJSONEncoder)
    except (TypeError, ValueError):
        return repr(output)
    return output


def _finishing():
    """The outcome of a run, written by the delivery holding its lease (RUN_LEASE.releasing).

    Compiled once and committed without waiting for the disk, as the start: the task result
    Celery stores next, on the same connection, waits for its flush and so for this one's. Only
    a crash of PostgreSQL itself in between loses it, and then the run ends as one whose worker
    stopped renewing its lease: failed, with that reason (scheduler.recover), never silently
    (unless its start was lost with it: see _start_unopposed).
    """
    return RUN_LEASE.releasing(
        ScheduleRun.objects.filter(id=param(ScheduleRun, "id", "run_id"), status=ScheduleRun.Status.RUNNING),
        holder=param(ScheduleRun, "worker"), status=param(ScheduleRun, "status"),
        finished_at=param(ScheduleRun, "finished_at"), output=param(ScheduleRun, "output"),
        error=param(ScheduleRun, "error"), reason=_reason_noted(param(ScheduleRun, "reason", "skipped")))


def _reason_noted(skipped):
    """The run's reason with a skip's reason after it ("" adds nothing): after what recovery may
    have written there already."""
    return Concat(F("reason"), skipped, output_field=ScheduleRun._meta.get_field("reason"))


_FINISH = CompiledUpdate(_finishing, unflushed=True)


def run_finish(*, run_id: int, worker: str, succeeded: bool, output=None, error: str = "", task_id: str = "",
               started_at: datetime | None = None, skipped: str = "") -> None:
    """Record the outcome of run `run_id`, which `worker` started at `started_at` under `task_id`
    (`skipped`: the reason it had nothing to do, a Skipped result's)."""
    output = json_safe(output)
    status = (ScheduleRun.Status.SKIPPED if skipped else
              ScheduleRun.Status.SUCCEEDED if succeeded else ScheduleRun.Status.FAILED)

    def write() -> int:
        finished_at = timezone.now()
        written = _FINISH(run_id=run_id, worker=worker, status=status, finished_at=finished_at, output=output,
                          error=error, skipped=skipped)
        if written or not (task_id and started_at):
            return written
        # The start was lost: committed without waiting for the disk, it went with a crash of
        # PostgreSQL, and the run reads as it was before it. It did run, here: say so, or the run
        # would wait as sent and, its message acknowledged, be sent again as a vanished one. Only
        # a delivery that started calls this, so a run waiting under its task id is its own lost
        # start: never started, or started last by an earlier delivery (this one is its retry).
        # A later start is another delivery's, which took the run over and is to finish it.
        not_started_since = ScheduleRun.objects.filter(
            Q(started_at__isnull=True) | Q(started_at__lt=started_at), id=run_id, task_id=task_id,
            status__in=WAITING)
        return not_started_since.update(status=status, reason=_reason_noted(Value(skipped)), worker=worker,
                                        started_at=started_at, finished_at=finished_at, output=output, error=error)

    if not with_retries(write):
        # Another delivery took the run over, or recovery closed it: its record says which.
        logger.warning("run %s: its outcome was not written, the run is no longer this delivery's (%s)", run_id,
                       worker)


class RecordedTask(Task):
    def __call__(self, *args, **kwargs):
        run_id = _run_header(self.request, RUN_HEADER)
        if run_id is None or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        # The worker's node name with this process and a token: each delivery its own holder.
        worker = holder_name(self.request.hostname)
        self.request.run_holder = worker  # for run_again_later, inside the task
        started = {"task_id": self.request.id, "started_at": timezone.now()}
        try:
            decision = run_start(run_id=run_id, task_id=self.request.id, worker=worker)
        except DATABASE_DOWN as error:
            # Not acknowledged as done: the run has not started, and this delivery comes back
            # until the ledger can say whether it may.
            logger.warning("run %s of %s: the database cannot be reached (%s); delivered again in %d s",
                           run_id, self.name, error, DATABASE_WAIT_SECONDS)
            self._deliver_again(countdown=DATABASE_WAIT_SECONDS)
        if decision.lease_until is not None:
            self._wait_for_lease(decision)
        if not decision.run:
            logger.info("run %s of %s not started: %s", run_id, self.name, decision.reason)
            # Ignore leaves this delivery's task result alone instead of recording a success.
            raise Ignore()
        if self.request.headers:
            # A retry of the run started here gets a wait budget of its own.
            self.request.headers.pop(LEASE_WAITS_HEADER, None)
        with RUN_LEASES.holding(run_id, worker):
            try:
                result = super().__call__(*args, **kwargs)
            except (Retry, RunAgainLater):
                # The retry is a new delivery of the same run: let it start at once. (A run sent
                # again for later was handed back before its copy went: run_again_later.)
                _run_hand_back(run_id, worker)
                raise
            except JobFailed as failed:
                _outcome_keep(run_id=run_id, worker=worker, succeeded=False, output=failed.output, error=str(failed),
                              **started)
                raise
            except BaseException:
                _outcome_keep(run_id=run_id, worker=worker, succeeded=False, error=traceback.format_exc(), **started)
                raise
        skipped = {"skipped": result.reason} if isinstance(result, Skipped) else {}
        _outcome_keep(run_id=run_id, worker=worker, succeeded=True, output=result, **started, **skipped)
        return result

    def _wait_for_lease(self, decision: StartDecision) -> None:
        """Send this copy again for when the other delivery's lease lapses, and drop this one.

        The copy waits as a message with an ETA, not in an executing process: with late acks and
        a prefetch of one a sleeping process would stop its worker taking other tasks. If the
        other worker was killed (this is the redelivery), the run is taken over then; if it
        lives, it keeps renewing, and after LEASE_WAITS tries this copy is dropped. The copy
        carries no expiry: the run already started once, so the schedule's "too late to start"
        no longer applies, and an expired copy would leave the run to be closed as lost.
        """
        waits = int((self.request.headers or {}).get(LEASE_WAITS_HEADER) or 0)
        if waits >= LEASE_WAITS:
            return
        wait = max(1.0, (decision.lease_until - timezone.now()).total_seconds() + 1)
        logger.info("run %s of %s: %s; trying again in %.0f s", self.request.headers[RUN_HEADER], self.name,
                    decision.reason, wait)
        self._deliver_again(countdown=wait, **{LEASE_WAITS_HEADER: waits + 1})

    def run_again_later(self, *, countdown: float, kwargs: dict) -> None:
        """Send this run again with `kwargs` for `countdown` seconds from now and end this delivery
        (RunAgainLater): a job's wait (a host's turn) as a message, not a sleeping worker. Cheaper
        than Celery's retry, which stores a RETRY result for every wait; raises one of the
        broker's errors when the copy cannot be published, with the run still this delivery's.

        The run is handed back (sent, its lease let go) before the copy is published: a copy due
        at once, taken by another process of the worker before this delivery let go, found the
        run running under a live lease and waited that lease out (61 s) as if another delivery
        were running it."""
        headers = dict(self.request.headers or {})
        run_id, holder = headers.get(RUN_HEADER), getattr(self.request, "run_holder", None)
        handed_back = run_id is not None and holder is not None and _run_hand_back(run_id, holder)
        try:
            self.signature_from_request(self.request, kwargs=kwargs, headers=headers, expires=None).apply_async(
                countdown=countdown)
        except BaseException:
            if handed_back:
                _run_take_back(run_id, holder)
            raise
        raise RunAgainLater()

    def _deliver_again(self, *, countdown: float, **headers) -> None:
        """Send this delivery again (same task id, same run) for `countdown` seconds from now and
        drop this one. The copy carries no expiry: the run was due already, and an expired copy
        would leave it to be closed as lost."""
        headers = {**(self.request.headers or {}), **headers}
        self.signature_from_request(self.request, headers=headers, expires=None).apply_async(countdown=countdown)
        raise Ignore()


def _outcome_keep(*, run_id: int, worker: str, **outcome) -> None:
    """Record a finished run's outcome; if the database cannot be reached, hand the outcome to
    OUTCOME_TASK, which writes it once the database answers, instead of losing it."""
    try:
        run_finish(run_id=run_id, worker=worker, **outcome)
    except (*DATABASE_DOWN, SoftTimeLimitExceeded) as error:
        # The soft time limit too: it may strike while the write is retried (a run that ended
        # just as the database went away), and the outcome would be lost with the write.
        logger.warning("run %s: its outcome cannot be written yet (%r); kept in a message until it can",
                       run_id, error)
        outcome["output"] = json_safe(outcome.get("output"))
        if outcome.get("started_at"):
            outcome["started_at"] = outcome["started_at"].isoformat()
        current_app.send_task(OUTCOME_TASK, kwargs={"run_id": run_id, "worker": worker, **outcome},
                              countdown=DATABASE_WAIT_SECONDS)
