"""Beat's work, as services: keep due times in step with the schedules, claim due slots in the
run ledger, publish them, and recover slots a stopped beat claimed but never sent.

The order makes every slot go out once. A slot is claimed by inserting its ledger row (unique
per schedule and slot) and committing; only then is it published; then it is marked sent. A
beat killed between claim and publish leaves a claimed row, which any beat takes over after
`RECLAIM_AFTER` and publishes, or records as not enqueued once past its starting deadline. If
the killed beat had in fact published, the worker sees the run already started or finished and
drops the second copy, so nothing runs twice.
"""

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Min, Q, Value, When
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from scheduler.models import ScheduleChanges, ScheduleRun, ScheduleState
from scheduler.slots import plan_slots, policy_of
from scheduler.timing import UnschedulableError, first_slot_from

logger = logging.getLogger(__name__)

# Message headers a run carries; the worker reads them (scheduler.run_recording).
RUN_HEADER = "schedule_run_id"
SCHEDULED_FOR_HEADER = "scheduled_for"
SCHEDULE_NAME_HEADER = "schedule_name"

# Publishing a batch takes well under a second; a claim this old was stranded by a beat that
# stopped (or lost the broker) between claiming and publishing.
RECLAIM_AFTER = timedelta(seconds=20)
# Kombu's restore of unacknowledged messages runs every few seconds; a lapsed run is given this
# much beyond the visibility timeout for its redelivery to arrive.
LOST_MARGIN = timedelta(minutes=5)
NEVER_STARTED_AFTER = timedelta(hours=24)
# What publishing raises when Redis cannot be reached: kombu's own (BatchPublishError from a
# pipeline that failed mid-way is one), redis-py's, or the socket's.
BROKER_ERRORS = (KombuError, RedisError, OSError)
CLAIM_BATCH = 500
NEW_SCHEDULE_LOOK_BACK = timedelta(minutes=2)
SYNC_CHUNK = 1000

# What decides when a schedule fires; a change to any of these recomputes its next due time.
TIMING_FIELDS = (
    "id", "enabled", "one_off", "start_time", "expires",
    "interval__every", "interval__period",
    "crontab__minute", "crontab__hour", "crontab__day_of_month", "crontab__month_of_year",
    "crontab__day_of_week", "crontab__timezone",
    "solar__event", "solar__latitude", "solar__longitude",
    "clocked__clocked_time",
)
SCHEDULE_RELATIONS = ("interval", "crontab", "solar", "clocked")


def schedule_changes_version() -> int:
    """The number database triggers bump on every schedule write; one indexed row."""
    return ScheduleChanges.objects.filter(id=1).values_list("version", flat=True).first() or 0


def _fingerprint(timing_values: tuple) -> str:
    return hashlib.sha256(repr(timing_values[1:]).encode()).hexdigest()


def starting_state(task: PeriodicTask, *, now: datetime, new: bool = False) -> tuple[datetime | None, str]:
    """(next due time, problem) for a schedule that is new, changed or re-enabled.

    A changed or re-enabled schedule starts from now: the paused period is never replayed. A
    new one starts from when it was saved (at most NEW_SCHEDULE_LOOK_BACK ago), so a schedule
    created just before a slot is not skipped because beat noticed it a moment after the slot.
    """
    if not task.enabled:
        return None, ""
    if task.expires and task.expires <= now:
        return None, f"Expired at {task.expires.isoformat()}."
    start = now
    if new and task.date_changed and not task.interval_id:
        # (An interval starts at once anyway: its slots are counted from its start.)
        start = min(now, max(task.date_changed, now - NEW_SCHEDULE_LOOK_BACK))
    try:
        return first_slot_from(task, start), ""
    except Exception as error:
        # Whatever a hand-written row holds, that schedule waits with its reason shown in the
        # admin, and the others go on.
        return None, f"Cannot be scheduled: {error}"


def schedules_sync(*, now: datetime) -> int:
    """Bring every schedule's due time in step with its definition; return how many changed.

    Reads one narrow row per schedule and loads in full only those whose timing changed, a
    chunk at a time, each chunk one short transaction.
    """
    known = dict(ScheduleState.objects.values_list("task_id", "fingerprint"))
    changed = {}
    for values in PeriodicTask.objects.values_list(*TIMING_FIELDS).iterator(chunk_size=5000):
        fingerprint = _fingerprint(values)
        if known.get(values[0]) != fingerprint:
            changed[values[0]] = fingerprint
    ids = list(changed)
    for start in range(0, len(ids), SYNC_CHUNK):
        tasks = PeriodicTask.objects.filter(id__in=ids[start:start + SYNC_CHUNK]).select_related(*SCHEDULE_RELATIONS)
        with transaction.atomic():
            _states_apply(tasks, changed, known, now=now)
    return len(changed)


def _states_apply(tasks, fingerprints: dict, known: dict, *, now: datetime) -> None:
    new = []
    for task in tasks:
        next_due_at, problem = starting_state(task, now=now, new=task.id not in known)
        fields = {"next_due_at": next_due_at, "fingerprint": fingerprints[task.id], "problem": problem,
                  "synced_at": now}
        if problem:
            logger.warning("beat: schedule %r: %s", task.name, problem)
        if task.id in known:
            # Conditional: if another beat already applied this change, nothing happens twice.
            ScheduleState.objects.filter(task_id=task.id, fingerprint=known[task.id]).update(**fields)
        else:
            new.append(ScheduleState(task_id=task.id, **fields))
    ScheduleState.objects.bulk_create(new, ignore_conflicts=True)


def seconds_until_next_due(*, now: datetime, longest: float) -> float:
    earliest = ScheduleState.objects.aggregate(earliest=Min("next_due_at"))["earliest"]
    if earliest is None:
        return longest
    return max(0.0, min(longest, (earliest - now).total_seconds()))


@dataclass(frozen=True)
class Dispatch:
    """Everything needed to publish one claimed run."""

    run_id: int
    schedule_id: int | None
    task_id: str
    task_name: str
    schedule_name: str
    scheduled_for: datetime
    args: list
    kwargs: dict
    options: dict
    # The schedule's timing when the run was claimed, so a claim given back does not reset a
    # due time that an edit has computed since.
    fingerprint: str = ""


def _message_fields(*, args: str, kwargs: str, headers: str) -> tuple[dict, dict[str, str]]:
    """A schedule's message fields parsed: (values by field, problems by field). Args must be
    a JSON list, kwargs and headers JSON objects."""
    values, problems = {}, {}
    for field, text, shape in (("args", args, list), ("kwargs", kwargs, dict), ("headers", headers, dict)):
        try:
            values[field] = json.loads(text or ("[]" if shape is list else "{}"))
        except ValueError as error:
            problems[field] = f"{field} is not valid JSON ({error})"
            continue
        if not isinstance(values[field], shape):
            expected = "list" if shape is list else "object"
            problems[field] = f"{field} must be a JSON {expected}, not {type(values[field]).__name__}"
    return values, problems


def message_problems(*, args: str, kwargs: str, headers: str) -> dict[str, str]:
    """What is wrong with a schedule's message fields, by field. The admin form and beat both
    ask this one question."""
    return _message_fields(args=args, kwargs=kwargs, headers=headers)[1]


def message_problem(task: PeriodicTask) -> str:
    return "; ".join(message_problems(args=task.args, kwargs=task.kwargs, headers=task.headers).values())


def dispatch_for(run: ScheduleRun, task: PeriodicTask, fingerprint: str = "") -> Dispatch:
    """The message of a run; only for a schedule whose message_problem() is empty."""
    options = {key: getattr(task, key) for key in ("queue", "exchange", "routing_key", "priority")
               if getattr(task, key) is not None}
    if task.expire_seconds:
        options["expires"] = task.expire_seconds
    fields, _ = _message_fields(args=task.args, kwargs=task.kwargs, headers=task.headers)
    return Dispatch(
        run_id=run.id, schedule_id=run.schedule_id, task_id=run.task_id, task_name=run.task_name,
        schedule_name=run.schedule_name, scheduled_for=run.scheduled_for, args=fields["args"],
        kwargs=fields["kwargs"], options={**options, "headers": fields["headers"]}, fingerprint=fingerprint,
    )


def _due(until: datetime):
    return ScheduleState.objects.filter(next_due_at__lte=until, task__enabled=True)


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
        # A slot someone else already holds is skipped here: the unique constraint decides.
        ScheduleRun.objects.bulk_create(runs, ignore_conflicts=True, batch_size=CLAIM_BATCH)
        _states_advance(states)
        if one_offs:
            # As in django-celery-beat: a one-off schedule turns itself off once sent.
            PeriodicTask.objects.filter(id__in=one_offs).update(enabled=False)
        claimed = ScheduleRun.objects.filter(
            task_id__in=[run.task_id for run in runs if run.status == ScheduleRun.Status.CLAIMED]
        ).order_by("scheduled_for")
        fingerprints = {state.task_id: state.fingerprint for state in states}
        dispatches = [dispatch_for(run, tasks[run.schedule_id], fingerprints[run.schedule_id]) for run in claimed]
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
        ScheduleRun.objects.filter(id__in=withdrawn, status=ScheduleRun.Status.CLAIMED, claimed_by=node).delete()
    return valid


def claimed_ahead_release(dispatches: list[Dispatch], *, node: str) -> None:
    """Give back runs claimed ahead that this beat will not send (it is stopping): the slot
    becomes due again for whichever beat runs next, instead of waiting for recovery."""
    for dispatch in dispatches:
        with transaction.atomic():
            deleted, _ = ScheduleRun.objects.filter(
                id=dispatch.run_id, status=ScheduleRun.Status.CLAIMED, claimed_by=node).delete()
            if deleted:
                ScheduleState.objects.filter(task_id=dispatch.schedule_id, next_due_at__gt=dispatch.scheduled_for,
                                             fingerprint=dispatch.fingerprint).update(
                    next_due_at=dispatch.scheduled_for)


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
        ))
    return rows


def runs_publish(dispatches: list[Dispatch], *, app, producer) -> None:
    """Publish claimed runs in one Redis pipeline and mark them sent.

    If the broker fails, the runs stay claimed and are taken over after RECLAIM_AFTER.
    """
    if not dispatches:
        return
    with producer.batch(max_size=10 * len(dispatches) + 10):
        for dispatch in dispatches:
            app.send_task(
                dispatch.task_name, dispatch.args, dispatch.kwargs, task_id=dispatch.task_id, producer=producer,
                **{**dispatch.options, "headers": {**dispatch.options["headers"], **run_headers(dispatch)}},
            )
    # A fast worker may already have started a run: its status stays, its send time is noted.
    ScheduleRun.objects.filter(id__in=[d.run_id for d in dispatches]).update(
        sent_at=timezone.now(),
        status=Case(When(status=ScheduleRun.Status.CLAIMED, then=Value(ScheduleRun.Status.SENT)), default=F("status")),
    )


def run_headers(dispatch: Dispatch) -> dict:
    return {
        RUN_HEADER: dispatch.run_id,
        SCHEDULED_FOR_HEADER: dispatch.scheduled_for.isoformat(),
        SCHEDULE_NAME_HEADER: dispatch.schedule_name,
        # django-celery-results fills TaskResult.periodic_task_name from this header.
        "periodic_task_name": dispatch.schedule_name,
    }


def stranded_runs_recover(*, now: datetime, node: str) -> list[Dispatch]:
    """Take over runs claimed but never sent; return those still worth publishing.

    A taken-over run gets a new Celery task id: if the stopped beat did publish after all, its
    copy and ours are told apart, one runs and the other is dropped without touching the
    result the admin shows.
    """
    stranded = (ScheduleRun.objects.filter(status=ScheduleRun.Status.CLAIMED, claimed_at__lt=now - RECLAIM_AFTER)
                .select_related("schedule__scheduler_policy").order_by("claimed_at")[:CLAIM_BATCH])
    dispatches = []
    for run in stranded:
        taken = ScheduleRun.objects.filter(id=run.id, status=ScheduleRun.Status.CLAIMED, claimed_at=run.claimed_at)
        too_late = _not_to_send_late(run, now=now)
        if too_late:
            taken.update(status=ScheduleRun.Status.NOT_ENQUEUED, finished_at=now, reason=(
                f"Claimed by beat {run.claimed_by} but not known to have reached the broker (that beat stopped, "
                f"or could not reach Redis), and {too_late}"))
            continue
        run.task_id = str(uuid.uuid4())
        if taken.update(claimed_by=node, claimed_at=now, task_id=run.task_id):
            logger.warning("beat: sending run %s of %r, claimed by %s but not known to be sent", run.id,
                           run.schedule_name, run.claimed_by)
            dispatches.append(dispatch_for(run, run.schedule))
    return dispatches


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
    deadline = max(policy_of(task).starting_deadline, 3 * RECLAIM_AFTER)
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
        status=ScheduleRun.Status.RUNNING, lease_until__lt=now - visibility - LOST_MARGIN
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


def run_now_claim(*, task: PeriodicTask, now: datetime, node: str) -> Dispatch:
    """A manual run ("run now"): a ledger row like any slot's, for this moment."""
    run = ScheduleRun.objects.create(
        schedule=task, schedule_name=task.name, task_name=task.task, scheduled_for=now, kind=ScheduleRun.Kind.MANUAL,
        task_id=str(uuid.uuid4()), claimed_by=node, claimed_at=now,
    )
    return dispatch_for(run, task)


def runs_send_now(*, tasks: list[PeriodicTask], node: str, app) -> list[Dispatch]:
    """Claim a manual run of each schedule and publish them; raises one of BROKER_ERRORS when
    Redis cannot be reached, and then the claimed runs are left for beat's recovery."""
    now = timezone.now()
    dispatches = [run_now_claim(task=task, now=now, node=node) for task in tasks]
    with app.producer_or_acquire() as producer:
        runs_publish(dispatches, app=app, producer=producer)
    return dispatches


def schedule_state_is_current(task: PeriodicTask, state: ScheduleState) -> bool:
    """Whether beat computed `state` from the schedule's present definition."""
    values = PeriodicTask.objects.filter(id=task.id).values_list(*TIMING_FIELDS).first()
    return values is not None and _fingerprint(values) == state.fingerprint
