"""The missed-run policy: what happens to slots that passed while beat was not sending them."""

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.models import SchedulePolicy, ScheduleRun
from scheduler.policy import MAX_RECORDED_MISSED, plan_slots, policy_of
from tests.builders import interval_task, with_policy

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def plan_after_downtime(minutes: int, **policy):
    task = with_policy(interval_task("every minute", MINUTE), **policy)
    return plan_slots(task, policy_of(task), next_due_at=NOON, now=NOON + minutes * MINUTE + timedelta(seconds=5))


def statuses(plan) -> list[tuple[str, str]]:
    return [(slot.scheduled_for.strftime("%H:%M"), slot.status) for slot in plan.slots]


def test_a_slot_reached_within_the_starting_deadline_is_sent_as_scheduled():
    plan = plan_after_downtime(0, starting_deadline_seconds=60)
    assert [(s.kind, s.status) for s in plan.slots] == [("scheduled", "claimed")]
    assert plan.next_due_at == NOON + MINUTE


def test_skip_records_every_missed_slot_and_sends_only_the_on_time_one():
    plan = plan_after_downtime(3, missed_runs="skip", starting_deadline_seconds=60)
    assert statuses(plan) == [("12:00", "missed"), ("12:01", "missed"), ("12:02", "missed"), ("12:03", "claimed")]
    assert "Policy: skip missed runs" in plan.slots[0].reason
    assert plan.next_due_at == NOON + 4 * MINUTE


def test_run_once_sends_one_catch_up_run_for_all_missed_slots():
    plan = plan_after_downtime(3, missed_runs="once", starting_deadline_seconds=30)
    assert statuses(plan) == [("12:00", "missed"), ("12:01", "missed"), ("12:02", "missed"), ("12:03", "claimed")]
    # 12:03 is 5 s late, within the 30 s deadline: it stands for the missed ones.
    assert "covered by the run for 2026-01-01T12:03:00+00:00" in plan.slots[0].reason


def test_run_once_catches_up_with_the_newest_missed_slot_when_none_is_on_time():
    task = with_policy(interval_task("every minute", MINUTE), missed_runs="once", starting_deadline_seconds=2)
    plan = plan_slots(task, policy_of(task), next_due_at=NOON, now=NOON + 2 * MINUTE + timedelta(seconds=5))
    assert [(s.kind, s.status) for s in plan.slots] == [
        ("scheduled", "missed"), ("scheduled", "missed"), ("catch_up", "claimed")]


def test_run_each_sends_up_to_the_catch_up_limit_and_records_the_rest():
    plan = plan_after_downtime(5, missed_runs="each", catch_up_limit=2, starting_deadline_seconds=2)
    assert [(s.scheduled_for.strftime("%H:%M"), s.kind, s.status) for s in plan.slots] == [
        ("12:00", "scheduled", "missed"), ("12:01", "scheduled", "missed"), ("12:02", "scheduled", "missed"),
        ("12:03", "scheduled", "missed"), ("12:04", "catch_up", "claimed"), ("12:05", "catch_up", "claimed"),
    ]
    assert "beyond the limit" in plan.slots[0].reason


def test_a_year_of_downtime_records_a_bounded_number_of_rows():
    plan = plan_after_downtime(60 * 24 * 7, missed_runs="skip", starting_deadline_seconds=60)
    assert len(plan.slots) == MAX_RECORDED_MISSED
    assert "earlier missed slots are not listed" in plan.slots[0].reason
    assert plan.next_due_at > NOON + 60 * 24 * 7 * MINUTE


def test_a_schedule_without_a_policy_row_uses_the_defaults():
    task = interval_task("no policy", MINUTE)
    policy = policy_of(task)
    assert policy.missed_runs == SchedulePolicy.MissedRuns.ONCE
    assert policy.overlap == SchedulePolicy.Overlap.ALLOW
    assert ScheduleRun.Status.CLAIMED == "claimed"
