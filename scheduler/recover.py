"""Beat's fourth step: recover what a stopped process left behind.

Runs whose beat claim lapsed before they were sent are taken over and sent under a new task
id, or recorded as not enqueued once too late; runs sent whose message the broker no longer
holds (Redis restarted without its data) likewise; runs whose worker stopped renewing its lease,
and that no redelivery took over, are recorded as failed instead of staying "running".
"""

import logging
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings

from scheduler.broker import task_ids_held
from scheduler.claim import BEAT_CLAIM, CLAIM_BATCH
from scheduler.health_reads import start_graces
from scheduler.messages import Dispatch, dispatch_for, message_problem
from scheduler.models import ScheduleRun
from scheduler.policy import policy_of
from scheduler.worker import RUN_LEASE

logger = logging.getLogger(__name__)

# Kombu's restore of unacknowledged messages runs every few seconds; a lapsed run is given this
# much beyond the visibility timeout for its redelivery to arrive.
LOST_MARGIN = timedelta(minutes=5)
NEVER_STARTED_AFTER = timedelta(hours=24)


def stranded_runs_recover(*, now: datetime, node: str) -> list[Dispatch]:
    """Take over runs claimed but never sent; return those still worth publishing.

    A taken-over run gets a new Celery task id: if the stopped beat did publish after all, its
    copy and ours are told apart, one runs and the other is dropped without touching the
    result the admin shows.
    """
    BEAT_CLAIM.expire_from(ScheduleRun.objects.filter(status=ScheduleRun.Status.CLAIMED), claimed_at_field="claimed_at")
    stranded = (ScheduleRun.objects.filter(BEAT_CLAIM.lapsed(now), status=ScheduleRun.Status.CLAIMED)
                .select_related("schedule__scheduler_policy").order_by("claimed_until")[:CLAIM_BATCH])
    dispatches = []
    for run in stranded:
        # Still the claim we read: another beat's recovery may have taken it since.
        taken = ScheduleRun.objects.filter(id=run.id, status=ScheduleRun.Status.CLAIMED,
                                           claimed_until=run.claimed_until)
        too_late = _not_to_send_late(run, now=now)
        if too_late:
            taken.update(status=ScheduleRun.Status.NOT_ENQUEUED, finished_at=now, reason=(
                f"Claimed by beat {run.claimed_by} but not known to have reached the broker (that beat stopped, "
                f"or could not reach Redis), and {too_late}"))
            continue
        run.task_id = str(uuid.uuid4())
        if BEAT_CLAIM.take(taken, holder=node, now=now, claimed_at=now, task_id=run.task_id):
            logger.warning("beat: sending run %s of %r, claimed by %s but not known to be sent", run.id,
                           run.schedule_name, run.claimed_by)
            dispatches.append(dispatch_for(run, run.schedule))
    return dispatches


class VanishedRuns:
    """Sent runs whose message the broker no longer holds: Redis restarted without its data (or
    lost a key), so no worker will ever start them. Each is recorded with the reason and sent
    again under a new task id, or recorded as not enqueued when its schedule's starting deadline
    (or its message's expiry) has passed.

    A run is looked at once it waits past its start grace, and counts as vanished only when two
    readings of the broker at least CONFIRM_AFTER apart both miss it: a worker taking a message
    is, for a moment, in neither of the places read (scheduler.broker.task_ids_held). Each beat
    keeps its own first readings; the UPDATE that takes a run over is conditional on it being
    still sent under the same task id, so of several beats one acts.
    """

    def __init__(self) -> None:
        # LOST_MESSAGE_CHECK_SECONDS (15): how often the broker is read, and how far apart two
        # readings must be; a run is looked at no sooner than twice that after it was sent,
        # whatever its start grace.
        every = settings.LOST_MESSAGE_CHECK_SECONDS
        self.CHECK_EVERY_SECONDS = self.CONFIRM_AFTER_SECONDS = every
        self.AT_LEAST = timedelta(seconds=2 * every)
        self._checked = float("-inf")
        self._missing: dict[tuple[int, str], float] = {}

    def recover(self, *, now: datetime, node: str) -> list[Dispatch]:
        """Dispatches to publish for the vanished runs still worth sending; raises one of
        BROKER_ERRORS when the broker cannot be read (nothing is changed then)."""
        if time.monotonic() - self._checked < self.CHECK_EVERY_SECONDS:
            return []
        self._checked = time.monotonic()
        waiting = list(ScheduleRun.objects.filter(status=ScheduleRun.Status.SENT, sent_at__lt=now - self.AT_LEAST)
                       .select_related("schedule__scheduler_policy").order_by("sent_at")[:CLAIM_BATCH])
        graces = start_graces({run.schedule_id for run in waiting if run.schedule_id})
        overdue = [run for run in waiting if run.sent_at < now - max(graces.get(run.schedule_id, self.AT_LEAST),
                                                                     self.AT_LEAST)]
        if not overdue:
            self._missing = {}
            return []
        held = task_ids_held()
        seen_at = time.monotonic()
        missing = {(run.id, run.task_id): self._missing.get((run.id, run.task_id), seen_at)
                   for run in overdue if run.task_id not in held}
        self._missing = missing
        confirmed = [run for run in overdue if seen_at - missing.get((run.id, run.task_id), seen_at)
                     >= self.CONFIRM_AFTER_SECONDS]
        return [dispatch for run in confirmed if (dispatch := self._resend(run, now=now, node=node))]

    def _resend(self, run: ScheduleRun, *, now: datetime, node: str) -> Dispatch | None:
        taken = ScheduleRun.objects.filter(id=run.id, status=ScheduleRun.Status.SENT, task_id=run.task_id)
        vanished = (f"Sent at {run.sent_at:%H:%M:%S} UTC, but its message was no longer in the broker "
                    f"{(now - run.sent_at).total_seconds():.0f} s later (Redis lost it, restarted without its data, or "
                    "a worker took it and dropped it without starting the run)")
        too_late = _expired(run, now=now) or _not_to_send_late(run, now=now)
        if too_late:
            recorded = taken.update(status=ScheduleRun.Status.NOT_ENQUEUED, finished_at=now,
                                    reason=f"{vanished}, and {too_late}")
            if recorded:
                logger.warning("beat: run %s of %r lost with its message, not sent again: %s", run.id,
                               run.schedule_name, too_late)
            return None
        run.task_id = str(uuid.uuid4())
        if not BEAT_CLAIM.take(taken, holder=node, now=now, free=BEAT_CLAIM.unheld(), status=ScheduleRun.Status.CLAIMED,
                               claimed_at=now, task_id=run.task_id, reason=f"{vanished}; sent again at "
                               f"{now:%H:%M:%S} UTC under a new task id."):
            return None
        logger.warning("beat: sending run %s of %r again: its message vanished from the broker", run.id,
                       run.schedule_name)
        return dispatch_for(run, run.schedule)


def _expired(run: ScheduleRun, *, now: datetime) -> str:
    """Why a sent run's message would have expired by now ("" when it would not): a worker drops
    an expired message without starting its task."""
    seconds = run.schedule.expire_seconds if run.schedule else None
    if seconds and now - run.sent_at > timedelta(seconds=seconds):
        return f"its message expired {seconds} s after it was sent (the schedule's expire_seconds)."
    return ""


def _not_to_send_late(run: ScheduleRun, *, now: datetime) -> str:
    """Why a stranded run should no longer be sent ("" when it should)."""
    task = run.schedule
    if task is None:
        return "the schedule was deleted since."
    problem = message_problem(task)
    if problem:
        return f"the schedule's {problem}."
    if run.kind != ScheduleRun.Kind.SCHEDULED:
        # Catch-up and manual runs were chosen to run late; a one-off has turned itself off.
        return ""
    if not task.enabled and not task.one_off:
        return "the schedule was disabled since."
    # Never shorter than recovery itself takes, or no stranded run could ever be sent.
    deadline = max(policy_of(task).starting_deadline, 3 * BEAT_CLAIM.lasts)
    if now - run.scheduled_for > deadline:
        return f"the starting deadline of {deadline.total_seconds():.0f} s has passed."
    return ""


def lost_runs_close(*, now: datetime) -> int:
    """Record as failed the runs no worker will finish, instead of leaving them "running".

    A running run's lease lapses within a minute of its worker dying; Redis hands the message
    to another worker after the visibility timeout, and that delivery takes the run over. Once
    that time has passed too, nobody will. A run sent but never started for a day had its
    message expire, go to a task no worker knows, or vanish with Redis.
    """
    visibility = timedelta(seconds=settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"])
    lost_with_worker = ScheduleRun.objects.filter(
        RUN_LEASE.lapsed(now - visibility - LOST_MARGIN), status=ScheduleRun.Status.RUNNING
    ).update(
        status=ScheduleRun.Status.FAILED, finished_at=now, lease_until=None,
        error=f"The worker stopped renewing its lease (it was killed, lost its machine, or hit the hard time limit), "
              f"and no redelivery took the run over within the broker's visibility timeout ({visibility}).",
    )
    never_started = ScheduleRun.objects.filter(
        status=ScheduleRun.Status.SENT, sent_at__lt=now - NEVER_STARTED_AFTER
    ).update(
        status=ScheduleRun.Status.FAILED, finished_at=now,
        error=f"Sent to the broker but no worker started it within {NEVER_STARTED_AFTER}: its message expired, "
              "no running worker knows the task or consumes its queue, or Redis lost the message.",
    )
    return lost_with_worker + never_started
