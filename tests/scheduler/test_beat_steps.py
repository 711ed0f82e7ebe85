"""Beat's services against the database: due times kept in step, slots claimed once, recovery."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.app.defaults import DEFAULTS
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from scheduler import beat
from scheduler.claim import BEAT_CLAIM, claimed_ahead_release, claimed_ahead_still_valid, due_runs_claim
from scheduler.models import ScheduleRun, ScheduleState
from scheduler.publish import runs_publish
from scheduler.recover import lost_runs_close, stranded_runs_recover
from scheduler.sync import schedule_changes_version, schedules_sync
from tests.builders import clocked_task, crontab_task, interval_task, with_policy
from wiring.celery import app as celery_app

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def next_due(task) -> datetime | None:
    return ScheduleState.objects.get(task=task).next_due_at


def run_beat_until(end: datetime, *, start: datetime) -> None:
    """Beat's loop with a controlled clock: wake at each due time (plus a second) until `end`."""
    schedules_sync(now=start)
    while True:
        earliest = ScheduleState.objects.exclude(next_due_at=None).order_by("next_due_at").first()
        if earliest is None or earliest.next_due_at >= end:
            return
        due_runs_claim(now=earliest.next_due_at + timedelta(seconds=1), node="test-beat")


def test_every_write_to_a_schedule_moves_the_change_counter_queryset_update_included():
    task = interval_task("watched", MINUTE)
    before = schedule_changes_version()
    PeriodicTask.objects.filter(id=task.id).update(enabled=False)
    after_update = schedule_changes_version()
    CrontabSchedule.objects.create(minute="5", timezone="UTC")
    CrontabSchedule.objects.filter(minute="5").update(minute="6")
    assert before < after_update < schedule_changes_version()


def test_sync_computes_due_times_and_recomputes_only_what_changed():
    hourly = crontab_task("hourly", "0 * * * *")
    minutely = interval_task("minutely", MINUTE)
    assert schedules_sync(now=NOON + timedelta(seconds=30)) == 2
    assert next_due(hourly) == NOON + 60 * MINUTE
    assert next_due(minutely) == NOON + timedelta(seconds=30)
    assert schedules_sync(now=NOON + MINUTE) == 0

    PeriodicTask.objects.filter(id=hourly.id).update(enabled=False)
    assert schedules_sync(now=NOON + MINUTE) == 1
    assert next_due(hourly) is None and next_due(minutely) == NOON + timedelta(seconds=30)


def test_a_due_slot_is_claimed_once_even_when_two_beats_ask():
    task = crontab_task("every minute", "* * * * *")
    schedules_sync(now=NOON - timedelta(seconds=30))
    first, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="beat-a")
    second, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="beat-b")
    assert [(d.schedule_name, d.scheduled_for) for d in first] == [("every minute", NOON)]
    assert second == []
    assert next_due(task) == NOON + MINUTE


def test_the_ledger_refuses_a_second_row_for_the_same_slot():
    task = crontab_task("every minute", "* * * * *")
    schedules_sync(now=NOON - timedelta(seconds=30))
    due_runs_claim(now=NOON + timedelta(seconds=1), node="beat-a")
    # A beat whose due time was stale (set back by a concurrent sync) tries the slot again.
    ScheduleState.objects.filter(task=task).update(next_due_at=NOON)
    again, _ = due_runs_claim(now=NOON + timedelta(seconds=2), node="beat-b")
    assert again == [] and ScheduleRun.objects.filter(schedule=task).count() == 1


def test_a_daily_new_york_job_is_claimed_once_on_each_dst_change_day():
    daily = crontab_task("daily 02:30", "30 2 * * *", zone="America/New_York")
    hourly = crontab_task("hourly", "0 * * * *", zone="America/New_York")
    new_york = ZoneInfo("America/New_York")
    for day, hours in ((datetime(2026, 3, 8), 23), (datetime(2026, 11, 1), 25)):
        start = day.replace(tzinfo=new_york)
        end = (day + timedelta(days=1)).replace(tzinfo=new_york)
        ScheduleState.objects.all().delete()
        run_beat_until(end, start=start - timedelta(seconds=1))
        on_that_day = ScheduleRun.objects.filter(scheduled_for__gte=start, scheduled_for__lt=end, status="claimed")
        assert on_that_day.filter(schedule=daily).count() == 1
        assert on_that_day.filter(schedule=hourly).count() == hours


def test_a_one_off_runs_once_across_restarts_and_two_at_the_same_instant_both_run():
    first = clocked_task("one-off A", NOON)
    second = clocked_task("one-off B", NOON)
    schedules_sync(now=NOON - MINUTE)
    claimed, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="beat")
    assert sorted(d.schedule_name for d in claimed) == ["one-off A", "one-off B"]
    # Sent one-offs turn themselves off, as in django-celery-beat.
    assert not PeriodicTask.objects.filter(id__in=[first.id, second.id], enabled=True).exists()
    # A restarted beat syncs from scratch and finds nothing more to send.
    ScheduleState.objects.all().delete()
    schedules_sync(now=NOON + MINUTE)
    assert due_runs_claim(now=NOON + MINUTE, node="beat-2")[0] == []
    assert ScheduleRun.objects.count() == 2


def test_re_enabling_a_paused_schedule_does_not_replay_the_paused_period():
    task = with_policy(crontab_task("every minute", "* * * * *"), missed_runs="each", catch_up_limit=100)
    schedules_sync(now=NOON - timedelta(seconds=30))
    PeriodicTask.objects.filter(id=task.id).update(enabled=False)
    schedules_sync(now=NOON)
    PeriodicTask.objects.filter(id=task.id).update(enabled=True)
    an_hour_later = NOON + 60 * MINUTE + timedelta(seconds=10)
    schedules_sync(now=an_hour_later)
    claimed, _ = due_runs_claim(now=an_hour_later + MINUTE, node="beat")
    assert [d.scheduled_for for d in claimed] == [NOON + 61 * MINUTE]
    assert not ScheduleRun.objects.filter(status="missed").exists()


def test_beat_downtime_is_handled_by_the_policy_and_every_missed_slot_is_recorded():
    with_policy(crontab_task("every minute", "* * * * *"), missed_runs="once", starting_deadline_seconds=30)
    schedules_sync(now=NOON - timedelta(seconds=30))
    claimed, _ = due_runs_claim(now=NOON + 10 * MINUTE + timedelta(seconds=40), node="beat")
    assert [(d.scheduled_for, ScheduleRun.objects.get(id=d.run_id).kind) for d in claimed] == [
        (NOON + 10 * MINUTE, "catch_up")]
    assert ScheduleRun.objects.filter(status="missed").count() == 10


def test_a_run_claimed_but_never_sent_is_sent_by_the_next_beat_within_its_deadline():
    with_policy(crontab_task("every minute", "* * * * *"), starting_deadline_seconds=120)
    schedules_sync(now=NOON - timedelta(seconds=30))
    stranded, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="killed-beat")
    assert stranded_runs_recover(now=NOON + timedelta(seconds=5), node="beat-2") == []
    recovered = stranded_runs_recover(now=NOON + timedelta(seconds=30), node="beat-2")
    assert [d.run_id for d in recovered] == [stranded[0].run_id]
    assert ScheduleRun.objects.get(id=stranded[0].run_id).claimed_by == "beat-2"


def test_a_run_stranded_past_its_deadline_is_recorded_as_not_enqueued_with_the_reason():
    crontab_task("every minute", "* * * * *")
    schedules_sync(now=NOON - timedelta(seconds=30))
    stranded, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="killed-beat")
    assert stranded_runs_recover(now=NOON + 5 * MINUTE, node="beat-2") == []
    run = ScheduleRun.objects.get(id=stranded[0].run_id)
    assert run.status == "not_enqueued"
    assert "Claimed by beat killed-beat" in run.reason and "starting deadline of 60 s has passed" in run.reason


def test_a_run_of_a_deleted_schedule_is_not_sent_later():
    task = crontab_task("every minute", "* * * * *")
    schedules_sync(now=NOON - timedelta(seconds=30))
    stranded, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="killed-beat")
    task.delete()
    assert stranded_runs_recover(now=NOON + timedelta(seconds=30), node="beat-2") == []
    run = ScheduleRun.objects.get(id=stranded[0].run_id)
    assert run.status == "not_enqueued" and run.schedule_name == "every minute"
    assert "the schedule was deleted since" in run.reason


def test_a_schedule_that_cannot_be_computed_says_why_and_others_still_run():
    broken = crontab_task("broken", "0 0 31 2 *")
    fine = interval_task("fine", MINUTE)
    schedules_sync(now=NOON)
    assert "Cannot be scheduled" in ScheduleState.objects.get(task=broken).problem
    assert [d.schedule_name for d in due_runs_claim(now=NOON, node="beat")[0]] == [fine.name]


def test_a_run_whose_worker_vanished_is_recorded_as_failed_once_no_redelivery_can_take_it():
    task = interval_task("long job", MINUTE)
    schedules_sync(now=NOON)
    [claimed], _ = due_runs_claim(now=NOON, node="beat")
    ScheduleRun.objects.filter(id=claimed.run_id).update(status="running", lease_until=NOON + MINUTE)
    assert lost_runs_close(now=NOON + 30 * MINUTE) == 0
    assert lost_runs_close(now=NOON + 3 * 60 * MINUTE) == 1
    run = ScheduleRun.objects.get(schedule=task)
    assert run.status == "failed" and "stopped renewing its lease" in run.error


def test_a_schedule_whose_message_cannot_be_built_records_each_slot_as_not_enqueued():
    crontab_task("bad kwargs", "* * * * *", kwargs="[1]")
    good = crontab_task("good", "* * * * *")
    schedules_sync(now=NOON - timedelta(seconds=30))
    claimed, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="beat")
    assert [d.schedule_name for d in claimed] == [good.name]
    run = ScheduleRun.objects.get(schedule_name="bad kwargs")
    assert run.status == "not_enqueued" and "kwargs must be a JSON object, not list" in run.reason


def test_a_crontab_that_never_matches_is_reported_not_searched_forever():
    task = crontab_task("february 30th on a monday", "0 0 30 2 mon")
    schedules_sync(now=NOON)
    assert "matches no date in 400 years" in ScheduleState.objects.get(task=task).problem


def test_an_expired_schedule_stops_at_its_expiry():
    task = interval_task("until 12:02:30", MINUTE, expires=NOON + 2 * MINUTE + timedelta(seconds=30))
    schedules_sync(now=NOON)
    run_beat_until(NOON + 10 * MINUTE, start=NOON)
    assert ScheduleRun.objects.filter(schedule=task).count() == 3
    state = ScheduleState.objects.get(task=task)
    assert state.next_due_at is None and state.problem.startswith("No further runs: the schedule expires at")


def test_a_stranded_one_off_is_still_sent_although_it_turned_itself_off():
    clocked_task("one-off", NOON)
    schedules_sync(now=NOON - MINUTE)
    stranded, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="killed-beat")
    recovered = stranded_runs_recover(now=NOON + timedelta(seconds=30), node="beat-2")
    assert [d.run_id for d in recovered] == [stranded[0].run_id]
    # Taken over under a new Celery task id, so a copy the killed beat did send is told apart.
    assert recovered[0].task_id != stranded[0].task_id


def test_a_week_of_downtime_is_planned_without_walking_every_slot():
    task = interval_task("every second", timedelta(seconds=1))
    schedules_sync(now=NOON)
    claimed, _ = due_runs_claim(now=NOON + timedelta(days=7), node="beat")
    assert len(claimed) == 1
    assert ScheduleRun.objects.filter(schedule=task).count() == 100


def test_slots_are_claimed_ahead_and_all_future_slots_are_sent_whatever_the_policy():
    task = with_policy(interval_task("every second", timedelta(seconds=1)), missed_runs="once")
    schedules_sync(now=NOON)
    claimed, _ = due_runs_claim(now=NOON, until=NOON + timedelta(seconds=4), node="beat")
    assert [d.scheduled_for for d in claimed] == [NOON + timedelta(seconds=s) for s in range(5)]
    assert next_due(task) == NOON + timedelta(seconds=5)
    assert not ScheduleRun.objects.filter(status="missed").exists()


def test_a_run_claimed_ahead_is_withdrawn_when_its_schedule_is_paused_before_the_slot():
    paused = crontab_task("paused", "* * * * *")
    kept = crontab_task("kept", "* * * * *")
    one_off = clocked_task("one-off", NOON)
    schedules_sync(now=NOON - timedelta(seconds=30))
    claimed, _ = due_runs_claim(now=NOON - timedelta(seconds=5), until=NOON, node="beat")
    PeriodicTask.objects.filter(id=paused.id).update(enabled=False)
    valid = claimed_ahead_still_valid(claimed, node="beat")
    assert sorted(d.schedule_name for d in valid) == [kept.name, one_off.name]
    assert not ScheduleRun.objects.filter(schedule=paused).exists()


def test_a_stopping_beat_gives_back_what_it_claimed_ahead():
    task = crontab_task("every minute", "* * * * *")
    schedules_sync(now=NOON - timedelta(seconds=30))
    claimed, _ = due_runs_claim(now=NOON - timedelta(seconds=5), until=NOON, node="beat")
    assert next_due(task) == NOON + MINUTE
    claimed_ahead_release(claimed, node="beat")
    assert next_due(task) == NOON and not ScheduleRun.objects.exists()
    again, _ = due_runs_claim(now=NOON, node="beat-2")
    assert [d.scheduled_for for d in again] == [NOON]


def test_a_schedule_saved_just_before_a_slot_gets_that_slot_though_beat_saw_it_after():
    task = crontab_task("every minute", "* * * * *")
    PeriodicTask.objects.filter(id=task.id).update(date_changed=NOON - timedelta(seconds=10))
    schedules_sync(now=NOON + timedelta(seconds=3))
    assert next_due(task) == NOON
    # A long-saved schedule new to beat (an upgrade from the stock scheduler) looks back two
    # minutes at most.
    old = crontab_task("old", "* * * * *")
    PeriodicTask.objects.filter(id=old.id).update(date_changed=NOON - timedelta(days=30))
    schedules_sync(now=NOON + timedelta(seconds=3))
    assert next_due(old) == NOON - timedelta(minutes=1)


def test_a_new_interval_schedule_starts_when_beat_sees_it_without_replaying_its_first_seconds():
    task = interval_task("every second", timedelta(seconds=1))
    PeriodicTask.objects.filter(id=task.id).update(date_changed=NOON - timedelta(seconds=3))
    schedules_sync(now=NOON)
    assert next_due(task) == NOON


def test_a_claim_taken_over_while_the_broker_was_down_is_sent_by_its_new_holder_only(queue):
    with_policy(crontab_task("every minute", "* * * * *"), starting_deadline_seconds=600)
    schedules_sync(now=NOON - timedelta(seconds=30))
    held_in_memory, _ = due_runs_claim(now=NOON + timedelta(seconds=1), node="beat-1")
    # beat-1 could not publish; its claim lapsed and beat-2's recovery took the run over.
    taken_over = stranded_runs_recover(now=NOON + timedelta(seconds=30), node="beat-2")
    with celery_app.producer_or_acquire() as producer:
        # Redis is back: beat-1's copy, under the old task id, must not go out or mark the row sent.
        assert runs_publish(held_in_memory, app=celery_app, producer=producer, node="beat-1") == []
        assert queue.llen("default") == 0
        run = ScheduleRun.objects.get()
        assert (run.status, run.claimed_by, run.task_id) == ("claimed", "beat-2", taken_over[0].task_id)
        assert runs_publish(taken_over, app=celery_app, producer=producer, node="beat-2") == taken_over
    assert queue.llen("default") == 1
    assert ScheduleRun.objects.get().status == ScheduleRun.Status.SENT


def test_a_slot_claimed_far_ahead_stays_its_beats_until_past_the_slot():
    # At 100,000 schedules in one minute beat claims up to 45 s ahead; the claim is held until
    # the slot comes and a claim's length past it, so recovery does not take the run over while
    # its beat waits for the slot.
    task = crontab_task("every minute", "* * * * *")
    schedules_sync(now=NOON - MINUTE + timedelta(seconds=10))
    claimed, _ = due_runs_claim(now=NOON - timedelta(seconds=40), until=NOON, node="beat")
    assert [d.scheduled_for for d in claimed] == [NOON]
    assert ScheduleRun.objects.get(schedule=task).claimed_until == NOON + BEAT_CLAIM.lasts
    assert stranded_runs_recover(now=NOON + timedelta(seconds=10), node="other beat") == []
    taken = stranded_runs_recover(now=NOON + BEAT_CLAIM.lasts + timedelta(seconds=1), node="other beat")
    assert [d.schedule_name for d in taken] == [task.name]


def test_beat_claims_further_ahead_only_while_a_burst_is_due(monkeypatch):
    for number in range(3):
        crontab_task(f"every minute {number}", "* * * * *")
    schedules_sync(now=NOON - MINUTE + timedelta(seconds=10))
    thirty_before = NOON - timedelta(seconds=30)
    monkeypatch.setattr(beat, "BURST_RUNS", 4)
    assert beat.DatabaseScheduler._claim_horizon(thirty_before) == beat.CLAIM_AHEAD
    monkeypatch.setattr(beat, "BURST_RUNS", 3)
    assert beat.DatabaseScheduler._claim_horizon(thirty_before) == beat.CLAIM_AHEAD_MOST
    # Beyond the longest horizon nothing counts.
    assert beat.DatabaseScheduler._claim_horizon(NOON - timedelta(seconds=50)) == beat.CLAIM_AHEAD


def test_beats_copy_of_the_celery_settings_reads_as_django_settings_do(settings):
    conf = celery_app.conf.copy()
    before = {key: conf[key] for key in DEFAULTS}
    assert before["broker_url"] == settings.CELERY_BROKER_URL and before["task_send_sent_event"] is True
    beat.celery_settings_copied(conf)
    assert {key: conf[key] for key in DEFAULTS} == before
    assert not any(type(source).__name__ == "DictAttribute" for source in conf.maps)
    # What is set on the app itself still wins over the copy.
    conf.task_send_sent_event = not before["task_send_sent_event"]
    assert conf.task_send_sent_event is not before["task_send_sent_event"]
