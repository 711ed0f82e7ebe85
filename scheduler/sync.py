"""Beat's first step: keep every schedule's next due time in step with its definition.

Each schedule's timing is fingerprinted; only the schedules whose fingerprint moved are loaded
and given a new due time (ScheduleState), so an edit of any kind (the admin, the ORM,
`QuerySet.update`, raw SQL) takes effect within a tick and nothing else is recomputed.
"""

import hashlib
import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Min
from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleChanges, ScheduleState
from scheduler.timing import first_slot_from

logger = logging.getLogger(__name__)

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


def schedule_state_is_current(task: PeriodicTask, state: ScheduleState) -> bool:
    """Whether beat computed `state` from the schedule's present definition."""
    values = PeriodicTask.objects.filter(id=task.id).values_list(*TIMING_FIELDS).first()
    return values is not None and _fingerprint(values) == state.fingerprint
