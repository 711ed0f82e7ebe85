"""Which of a schedule's slots run, and which are recorded as missed: the missed-run policy.

A pure function of the schedule, its policy, the slot it was next due at and the time now, so
the policy can be tested with any clock. Beat applies the plan by inserting one ledger row per
slot it names.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django_celery_beat.models import PeriodicTask

from scheduler.models import SchedulePolicy, ScheduleRun
from scheduler.timing import first_slot_after

# After long downtime, at most this many missed slots get a row each; earlier ones are counted
# in the reason of the oldest row written, so a year offline does not write half a million rows.
MAX_RECORDED_MISSED = 1000


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


def default_policy() -> SchedulePolicy:
    return SchedulePolicy()


def policy_of(task: PeriodicTask) -> SchedulePolicy:
    try:
        return task.scheduler_policy
    except SchedulePolicy.DoesNotExist:
        return default_policy()


def due_slots(task: PeriodicTask, next_due_at: datetime, now: datetime) -> tuple[list[datetime], int, datetime | None]:
    """Slots from `next_due_at` up to `now`: (the newest ones, how many older were left out, next)."""
    slots: list[datetime] = []
    left_out = 0
    slot = next_due_at
    while slot is not None and slot <= now:
        slots.append(slot)
        if len(slots) > MAX_RECORDED_MISSED:
            slots.pop(0)
            left_out += 1
        slot = first_slot_after(task, slot)
    return slots, left_out, slot


def plan_slots(task: PeriodicTask, policy: SchedulePolicy, *, next_due_at: datetime, now: datetime) -> SlotPlan:
    slots, left_out, following = due_slots(task, next_due_at, now)
    plan = SlotPlan(next_due_at=following)
    if task.one_off:
        plan.next_due_at = None
    on_time = [slot for slot in slots if now - slot <= policy.starting_deadline]
    missed = [slot for slot in slots if now - slot > policy.starting_deadline]
    sent_late = _catch_up_choice(policy, missed, bool(on_time))
    for slot in missed:
        if slot in sent_late:
            plan.slots.append(PlannedSlot(slot, ScheduleRun.Kind.CATCH_UP, ScheduleRun.Status.CLAIMED))
        else:
            plan.slots.append(PlannedSlot(slot, ScheduleRun.Kind.SCHEDULED, ScheduleRun.Status.MISSED,
                                          _missed_reason(policy, slot, on_time, sent_late, now)))
    plan.slots.extend(PlannedSlot(slot, ScheduleRun.Kind.SCHEDULED, ScheduleRun.Status.CLAIMED) for slot in on_time)
    if left_out and plan.slots:
        oldest = plan.slots[0]
        plan.slots[0] = PlannedSlot(oldest.scheduled_for, oldest.kind, oldest.status,
                                    f"{oldest.reason} {left_out} earlier missed slots are not listed.".strip())
    if task.one_off and plan.slots:
        # A one-off sends its newest slot only; anything older was missed before it.
        plan.slots = [slot for slot in plan.slots if slot.status == ScheduleRun.Status.MISSED] + plan.to_send[-1:]
    return plan


def _catch_up_choice(policy: SchedulePolicy, missed: list[datetime], any_on_time: bool) -> list[datetime]:
    if not missed or policy.missed_runs == SchedulePolicy.MissedRuns.SKIP:
        return []
    if policy.missed_runs == SchedulePolicy.MissedRuns.ONCE:
        # An on-time run already stands for the missed ones.
        return [] if any_on_time else missed[-1:]
    return missed[-policy.catch_up_limit:] if policy.catch_up_limit else []


def _missed_reason(policy, slot, on_time, sent_late, now) -> str:
    late = int((now - slot).total_seconds())
    why = (f"Not sent within the starting deadline of {policy.starting_deadline_seconds} s "
           f"(beat reached it {late} s late: beat was stopped, behind, or the schedule was paused).")
    if policy.missed_runs == SchedulePolicy.MissedRuns.SKIP:
        return f"{why} Policy: skip missed runs."
    if policy.missed_runs == SchedulePolicy.MissedRuns.ONCE:
        covering = on_time[-1] if on_time else sent_late[-1]
        return f"{why} Policy: run once; covered by the run for {covering.isoformat()}."
    return f"{why} Policy: run each, up to {policy.catch_up_limit}; this one is beyond the limit."
