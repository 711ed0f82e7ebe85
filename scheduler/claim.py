"""Beat's second step: claim the due slots in the run ledger, before anything is published.

A slot is claimed by inserting its ledger row (unique per schedule and slot) and committing;
only then is it published (scheduler.publish), then marked sent. A beat killed between claim
and publish leaves a claimed row whose claim lapses after BEAT_CLAIM.lasts; any beat then takes
it over (scheduler.recover). If the killed beat had in fact published, the worker sees the run
already started or finished and drops the second copy, so nothing runs twice.
"""

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django_celery_beat.models import PeriodicTask

from scheduler.messages import Dispatch, dispatch_for, message_problem
from scheduler.models import ScheduleRun, ScheduleState
from scheduler.policy import plan_slots, policy_of
from scheduler.sync import SCHEDULE_RELATIONS
from scheduler.timing import UnschedulableError
from shared.claims import Claim
from shared.first_inserts import inserted_first

logger = logging.getLogger(__name__)

# A beat's claim on a run it has not published yet. Publishing a batch takes well under a
# second; a claim this long past its slot (or past the moment it was taken, for a slot already
# due) was stranded by a beat that stopped (or lost the broker) between claiming and publishing.
# Renewed only just before the run is published; the claim ends when its run is sent.
BEAT_CLAIM = Claim(holder_field="claimed_by", until_field="claimed_until", lasts=timedelta(seconds=20))
CLAIM_BATCH = 500


def _due(until: datetime):
    return ScheduleState.objects.filter(next_due_at__lte=until, task__enabled=True)


def due_at_least(*, until: datetime, count: int) -> bool:
    """Whether at least `count` enabled schedules are due by `until`; counts no further than that."""
    return _due(until)[:count].count() >= count


def _due_states(until: datetime):
    states = (_due(until).order_by("next_due_at")
              .select_related(*(f"task__{relation}" for relation in SCHEDULE_RELATIONS), "task__scheduler_policy"))
    # Two beats take disjoint batches on PostgreSQL instead of waiting for each other; on
    # SQLite the IMMEDIATE transaction already lets one beat in at a time.
    return states.select_for_update(skip_locked=True, of=("self",))[:CLAIM_BATCH]


def due_runs_claim(*, now: datetime, node: str, until: datetime | None = None) -> tuple[list[Dispatch], int]:
    """Claim every slot up to `until` (default: now) of one batch of schedules: (runs to
    publish, each at its slot; schedules handled)."""
    until = max(now, until or now)
    if not _due(until).exists():
        # Most ticks find nothing due; on SQLite the claim's transaction would take the write
        # lock every second for nothing.
        return [], 0
    with transaction.atomic():
        states = list(_due_states(until))
        runs, tasks, one_offs = [], {}, []
        plans = {}
        for state in states:
            task = state.task
            try:
                plan = _plan_shared(plans, task, next_due_at=state.next_due_at, now=now, until=until)
            except UnschedulableError as error:
                logger.warning("beat: schedule %r cannot be scheduled: %s", task.name, error)
                state.next_due_at, state.problem = None, f"Cannot be scheduled: {error}"
                continue
            state.next_due_at = plan.next_due_at
            if plan.next_due_at is None and task.expires and not task.one_off:
                state.problem = f"No further runs: the schedule expires at {task.expires.isoformat()}."
            if task.one_off and plan.to_send:
                one_offs.append(task.id)
            tasks[task.id] = task
            runs.extend(_ledger_rows(task, plan.slots, now=now, node=node))
        # A slot someone else already holds is skipped here: the unique constraint decides, and
        # the INSERT returns the rows this beat wrote, so they need no second read.
        written = dict(inserted_first(runs, returning=("task_id", "id")))
        _states_advance(states)
        if one_offs:
            # As in django-celery-beat: a one-off schedule turns itself off once sent.
            PeriodicTask.objects.filter(id__in=one_offs).update(enabled=False)
        claimed = sorted((run for run in runs if run.status == ScheduleRun.Status.CLAIMED and run.task_id in written),
                         key=lambda run: run.scheduled_for)
        fingerprints = {state.task_id: state.fingerprint for state in states}
        dispatches = []
        for run in claimed:
            run.id = written[run.task_id]
            dispatches.append(dispatch_for(run, tasks[run.schedule_id], fingerprints[run.schedule_id]))
    return dispatches, len(states)


def claimed_ahead_still_valid(dispatches: list[Dispatch], *, node: str) -> list[Dispatch]:
    """Of runs claimed ahead of their slot, those whose schedule still exists and is enabled;
    the others' claims are withdrawn (their slot never came), so pausing or deleting a schedule
    between the claim and the slot takes effect. A one-off turned itself off when claimed."""
    live = set(PeriodicTask.objects.filter(id__in={d.schedule_id for d in dispatches})
               .filter(Q(enabled=True) | Q(one_off=True)).values_list("id", flat=True))
    valid = [d for d in dispatches if d.schedule_id in live]
    withdrawn = [d.run_id for d in dispatches if d.schedule_id not in live]
    if withdrawn:
        ScheduleRun.objects.filter(BEAT_CLAIM.held_by(node), id__in=withdrawn,
                                   status=ScheduleRun.Status.CLAIMED).delete()
    return valid


def claimed_ahead_release(dispatches: list[Dispatch], *, node: str) -> int:
    """Give back runs claimed ahead that this beat will not send (it is stopping): the slot
    becomes due again for whichever beat runs next, instead of waiting for recovery. How many
    were given back.

    A few statements per thousand runs: one transaction per run took 29 s for 29,000 claims, longer
    than a supervisor waits after SIGTERM, and the rest stayed claimed."""
    given_back = 0
    for start in range(0, len(dispatches), RELEASE_BATCH):
        batch = dispatches[start:start + RELEASE_BATCH]
        with transaction.atomic():
            # Locked, so recovery cannot take one over between reading and deleting it.
            held = set(ScheduleRun.objects.select_for_update().filter(
                BEAT_CLAIM.held_by(node), id__in=[dispatch.run_id for dispatch in batch],
                status=ScheduleRun.Status.CLAIMED).values_list("id", flat=True))
            ScheduleRun.objects.filter(id__in=held).delete()
            due_again = defaultdict(list)
            for dispatch in batch:
                if dispatch.run_id in held:
                    due_again[(dispatch.scheduled_for, dispatch.fingerprint)].append(dispatch.schedule_id)
            # Each schedule due again at its earliest slot given back (the condition keeps the
            # earliest, whatever the order), unless an edit computed its due time since.
            for (slot, fingerprint), schedule_ids in due_again.items():
                ScheduleState.objects.filter(task_id__in=schedule_ids, next_due_at__gt=slot,
                                             fingerprint=fingerprint).update(next_due_at=slot)
        given_back += len(held)
    return given_back


RELEASE_BATCH = 5000


def _plan_shared(plans: dict, task: PeriodicTask, *, next_due_at: datetime, now: datetime, until: datetime):
    """plan_slots, computed once for all schedules due together with the same timing and
    policy (thousands of schedules often share one crontab)."""
    policy = policy_of(task)
    key = (task.interval_id, task.crontab_id, task.solar_id, task.clocked_id, task.one_off, task.expires,
           task.start_time, next_due_at, policy.missed_runs, policy.catch_up_limit,
           policy.starting_deadline_seconds)
    if key not in plans:
        plans[key] = plan_slots(task, policy, next_due_at=next_due_at, now=now, until=until)
    return plans[key]


def _states_advance(states: list[ScheduleState]) -> None:
    # One UPDATE per distinct new due time: schedules due together mostly share the next one
    # too (same crontab), and Django's bulk_update builds a CASE per row, which costs seconds
    # of Python at thousands of schedules.
    groups = defaultdict(list)
    for state in states:
        groups[(state.next_due_at, state.problem)].append(state.task_id)
    for (next_due_at, problem), task_ids in groups.items():
        ScheduleState.objects.filter(task_id__in=task_ids).update(next_due_at=next_due_at, problem=problem)


def _ledger_rows(task: PeriodicTask, slots, *, now: datetime, node: str) -> list[ScheduleRun]:
    # A message that cannot be built is recorded, slot by slot, instead of stopping beat.
    problem = message_problem(task)
    rows = []
    for slot in slots:
        status, reason = slot.status, slot.reason
        if problem and status == ScheduleRun.Status.CLAIMED:
            status, reason = ScheduleRun.Status.NOT_ENQUEUED, f"Not sent: the schedule's {problem}."
        rows.append(ScheduleRun(
            schedule_id=task.id, schedule_name=task.name, task_name=task.task, scheduled_for=slot.scheduled_for,
            kind=slot.kind, status=status, reason=reason, task_id=str(uuid.uuid4()), claimed_by=node,
            claimed_at=now, finished_at=None if status == ScheduleRun.Status.CLAIMED else now,
            # A slot claimed ahead is held until it comes and `lasts` past it: recovery leaves a
            # run alone while its beat waits for the slot, however far ahead it was claimed.
            claimed_until=max(now, slot.scheduled_for) + BEAT_CLAIM.lasts
            if status == ScheduleRun.Status.CLAIMED else None,
        ))
    return rows


def run_now_claim(*, task: PeriodicTask, now: datetime, node: str) -> Dispatch:
    """A manual run ("run now"): a ledger row like any slot's, for this moment."""
    run = ScheduleRun.objects.create(
        schedule=task, schedule_name=task.name, task_name=task.task, scheduled_for=now, kind=ScheduleRun.Kind.MANUAL,
        task_id=str(uuid.uuid4()), claimed_by=node, claimed_at=now, claimed_until=now + BEAT_CLAIM.lasts,
    )
    return dispatch_for(run, task)
