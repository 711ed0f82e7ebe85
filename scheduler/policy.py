"""Which of a schedule's slots run, and which are recorded as missed: the missed-run policy.

A pure function of the schedule, its policy, the slot it was next due at and the time now, so
the policy can be tested with any clock. Beat applies the plan by inserting one ledger row per
slot it names.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django_celery_beat.models import PeriodicTask

from scheduler.models import SchedulePolicy, ScheduleRun
from scheduler.timing import interval_length, slots_after

# After long downtime, at most this many missed slots of one schedule get a row each; earlier
# ones are mentioned in the reason of the oldest row written, so a week offline does not write
# half a million rows (and hold the database's write lock while doing it).
MAX_RECORDED_MISSED = 100
# A crontab's slots are walked at most this far back; older ones are not even counted.
LONGEST_LOOK_BACK = timedelta(days=7)


@dataclass(frozen=True)
class PlannedSlot:
    scheduled_for: datetime
    kind: str  # ScheduleRun.Kind
    status: str  # ScheduleRun.Status: CLAIMED (to send) or MISSED
    reason: str = ""


@dataclass
class SlotPlan:
    slots: list[PlannedSlot] = field(default_factory=list)
    next_due_at: datetime | None = None

    @property
    def to_send(self) -> list[PlannedSlot]:
        return [slot for slot in self.slots if slot.status == ScheduleRun.Status.CLAIMED]


def policy_of(task: PeriodicTask) -> SchedulePolicy:
    try:
        return task.scheduler_policy
    except SchedulePolicy.DoesNotExist:
        # No row: the model's defaults.
        return SchedulePolicy()


def due_slots(
    task: PeriodicTask, next_due_at: datetime, now: datetime
) -> tuple[list[datetime], int | None, datetime | None]:
    """Slots from `next_due_at` up to `now`: (the newest ones, how many older were left out
    (None: not counted), the first slot after now)."""
    left_out: int | None = 0
    start = next_due_at
    if task.interval_id:
        # Arithmetic, not a walk: a one-second interval after a week offline is 600,000 slots.
        length = interval_length(task)
        passed = (now - next_due_at) // length + 1
        left_out = max(0, passed - MAX_RECORDED_MISSED)
        start = next_due_at + left_out * length
    slots = [start]
    if not task.interval_id and now - next_due_at > LONGEST_LOOK_BACK:
        # Walk from a week ago (not itself a slot) instead of from the first missed slot.
        left_out, start, slots = None, now - LONGEST_LOOK_BACK, []
    following = None
    for slot in slots_after(task, start):
        if slot > now:
            following = slot
            break
        slots.append(slot)
    if len(slots) > MAX_RECORDED_MISSED:
        left_out = None if left_out is None else left_out + len(slots) - MAX_RECORDED_MISSED
        slots = slots[-MAX_RECORDED_MISSED:]
    if task.expires:
        slots = [slot for slot in slots if slot < task.expires]
        following = following if following and following < task.expires else None
    return slots, left_out, following


def plan_slots(
    task: PeriodicTask, policy: SchedulePolicy, *, next_due_at: datetime, now: datetime, until: datetime | None = None
) -> SlotPlan:
    """One ledger row for each slot from `next_due_at` up to `until` (default: now): sent, or
    missed and why.

    Of the slots already passed, those within the starting deadline are on time, older ones
    missed. "Skip" sends the on-time ones; "run once" sends only the newest, standing for all
    the others; "run each" sends the on-time ones and the newest missed ones up to the
    catch-up limit. Slots still ahead (beat claims a little early) are all sent.
    """
    slots, left_out, following = due_slots(task, next_due_at, max(now, until or now))
    plan = SlotPlan(next_due_at=None if task.one_off else following)
    passed = [slot for slot in slots if slot <= now]
    send = _slots_to_send(policy, passed, now=now) + [slot for slot in slots if slot > now]
    if task.one_off:
        send = send[-1:]
    for slot in slots:
        late = now - slot > policy.starting_deadline
        if slot in send:
            kind = ScheduleRun.Kind.CATCH_UP if late else ScheduleRun.Kind.SCHEDULED
            plan.slots.append(PlannedSlot(slot, kind, ScheduleRun.Status.CLAIMED))
        else:
            plan.slots.append(PlannedSlot(slot, ScheduleRun.Kind.SCHEDULED, ScheduleRun.Status.MISSED,
                                          _missed_reason(policy, slot, send, now)))
    if left_out != 0 and plan.slots:
        oldest = plan.slots[0]
        earlier = "Earlier missed slots are" if left_out is None else f"{left_out} earlier missed slots are"
        plan.slots[0] = PlannedSlot(oldest.scheduled_for, oldest.kind, oldest.status,
                                    f"{oldest.reason} {earlier} not listed.".strip())
    return plan


def _slots_to_send(policy: SchedulePolicy, slots: list[datetime], *, now: datetime) -> list[datetime]:
    on_time = [slot for slot in slots if now - slot <= policy.starting_deadline]
    missed = [slot for slot in slots if now - slot > policy.starting_deadline]
    if policy.missed_runs == SchedulePolicy.MissedRuns.ONCE:
        return slots[-1:]
    if policy.missed_runs == SchedulePolicy.MissedRuns.SKIP:
        return on_time
    return (missed[-policy.catch_up_limit:] if policy.catch_up_limit else []) + on_time


def _missed_reason(policy, slot, send, now) -> str:
    late = int((now - slot).total_seconds())
    if policy.missed_runs == SchedulePolicy.MissedRuns.ONCE:
        return (f"Beat reached it {late} s late, with newer slots due too. "
                f"Policy: run once; covered by the run for {send[-1].isoformat()}.")
    why = (f"Not sent within the starting deadline of {policy.starting_deadline_seconds} s "
           f"(beat reached it {late} s late: beat was stopped, behind, or the broker was unreachable).")
    if policy.missed_runs == SchedulePolicy.MissedRuns.SKIP:
        return f"{why} Policy: skip missed runs."
    return f"{why} Policy: run each, up to {policy.catch_up_limit}; this one is beyond the limit."
