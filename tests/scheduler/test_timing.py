"""Slots of every kind of schedule, in the schedule's own timezone, across DST changes."""

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django_celery_beat.models import SolarSchedule

from scheduler.timing import UnschedulableError, first_slot_after, first_slot_from
from tests.builders import clocked_task, crontab_task, interval_task, periodic_task

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")


def slots_on(task, day: datetime, zone: ZoneInfo = NEW_YORK) -> list[datetime]:
    """Every slot of `task` on the local day `day` (midnight to midnight in `zone`)."""
    start = day.replace(tzinfo=zone).astimezone(UTC) - timedelta(microseconds=1)
    end = (day + timedelta(days=1)).replace(tzinfo=zone).astimezone(UTC)
    slots, slot = [], first_slot_after(task, start)
    while slot < end:
        slots.append(slot)
        slot = first_slot_after(task, slot)
    return slots


def test_a_daily_0230_new_york_job_fires_once_on_the_spring_forward_day():
    task = crontab_task("daily", "30 2 * * *", zone="America/New_York")
    slots = slots_on(task, datetime(2026, 3, 8))
    # 02:30 does not exist that day; cron runs it once, right after the jump to 03:00.
    assert [s.astimezone(NEW_YORK).isoformat() for s in slots] == ["2026-03-08T03:00:00-04:00"]


def test_a_daily_0130_new_york_job_fires_once_on_the_fall_back_day():
    task = crontab_task("daily", "30 1 * * *", zone="America/New_York")
    slots = slots_on(task, datetime(2026, 11, 1))
    # 01:30 happens twice that day; a fixed-hour job runs at the first one only.
    assert [s.astimezone(NEW_YORK).isoformat() for s in slots] == ["2026-11-01T01:30:00-04:00"]


def test_an_hourly_job_fires_23_times_on_spring_forward_and_25_on_fall_back():
    task = crontab_task("hourly", "0 * * * *", zone="America/New_York")
    assert len(slots_on(task, datetime(2026, 3, 8))) == 23
    assert len(slots_on(task, datetime(2026, 11, 1))) == 25
    assert len(slots_on(task, datetime(2026, 11, 2))) == 24


@pytest.mark.parametrize(
    ("day", "first_slots", "slots_that_day"),
    [
        # Spring: 02:00 (+10:30) becomes 02:30 (+11:00), so 02:30 exists, 30 minutes after 01:30.
        (datetime(2026, 10, 4), ["00:30:00+10:30", "01:30:00+10:30", "02:30:00+11:00", "03:30:00+11:00"], 24),
        # Autumn: 02:00 (+11:00) becomes 01:30 (+10:30), so 01:30 comes twice and fires at both.
        (datetime(2026, 4, 5), ["00:30:00+11:00", "01:30:00+11:00", "01:30:00+10:30", "02:30:00+10:30"], 25),
    ],
)
def test_a_half_past_job_in_lord_howe_fires_at_every_half_past_on_its_half_hour_change_days(
    day, first_slots, slots_that_day
):
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    task = crontab_task("half past", "30 * * * *", zone=lord_howe.key)
    slots = [slot.astimezone(lord_howe) for slot in slots_on(task, day, lord_howe)]
    assert [slot.isoformat().partition("T")[2] for slot in slots[:4]] == first_slots
    assert len(slots) == slots_that_day and all(slot.date() == day.date() for slot in slots)


def test_a_crontab_fires_in_its_own_timezone_not_the_sites():
    task = crontab_task("tokyo morning", "0 7 * * *", zone="Asia/Tokyo")
    slot = first_slot_after(task, datetime(2026, 6, 1, tzinfo=UTC))
    assert slot == datetime(2026, 6, 1, 22, 0, tzinfo=UTC)


def test_day_of_month_and_day_of_week_must_both_match_as_in_celery():
    # Celery reads this as "the 13th when it is a Friday"; classic cron would read "or".
    task = crontab_task("friday 13th", "0 0 13 * fri")
    slot = first_slot_after(task, datetime(2026, 1, 1, tzinfo=UTC))
    assert slot == datetime(2026, 2, 13, tzinfo=UTC)


def test_an_interval_fires_every_period_from_its_start():
    task = interval_task("every 90 s", timedelta(seconds=90))
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert first_slot_from(task, start) == start
    assert first_slot_after(task, start) == start + timedelta(seconds=90)


def test_a_schedule_with_a_start_time_does_not_fire_before_it():
    start_time = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    task = interval_task("later", timedelta(minutes=5), start_time=start_time)
    assert first_slot_from(task, datetime(2026, 1, 1, tzinfo=UTC)) == start_time


def test_a_clocked_schedule_has_one_slot():
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    task = clocked_task("once", at)
    assert first_slot_from(task, at - timedelta(hours=1)) == at
    assert first_slot_after(task, at) is None


def test_a_crontab_cron_cannot_evaluate_is_refused_with_the_reason():
    task = crontab_task("bad", "0 0 31 2 *")
    with pytest.raises(UnschedulableError):
        first_slot_after(task, datetime(2026, 1, 1, tzinfo=UTC))


def test_a_solar_schedule_fires_at_each_sunrise():
    solar = SolarSchedule.objects.create(event="sunrise", latitude=52.52, longitude=13.40)
    task = periodic_task("sunrise in Berlin", solar=solar)
    first = first_slot_after(task, datetime(2026, 6, 1, tzinfo=UTC))
    second = first_slot_after(task, first)
    # Berlin's June sunrise is a little before 03:00 UTC, about a day apart.
    assert first.date().isoformat() == "2026-06-01" and 2 <= first.hour <= 3
    assert timedelta(hours=23, minutes=50) < second - first < timedelta(hours=24, minutes=10)


def test_in_the_second_pass_of_the_repeated_hour_the_first_passs_slot_is_not_returned_again():
    new_york = ZoneInfo("America/New_York")
    task = crontab_task("half past one", "30 1 * * *", zone=new_york.key)
    # 01:10 EST, the second pass of 01:00-02:00 on the fall-back day; 01:30 EDT passed 40 minutes ago.
    moment = datetime(2026, 11, 1, 1, 10, tzinfo=new_york, fold=1)
    slot = first_slot_after(task, moment)
    assert slot > moment and slot.astimezone(new_york) == datetime(2026, 11, 2, 1, 30, tzinfo=new_york)


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        # 29 February: asked from 2027, every one of them, not only the first.
        ("0 12 29 2 *", datetime(2027, 1, 1, tzinfo=UTC), [2028, 2032, 2036, 2040]),
        # ...across the 2100 that has none (2096, then 2104).
        ("0 12 29 2 *", datetime(2095, 1, 1, tzinfo=UTC), [2096, 2104]),
        # 29 February that is a Monday (Celery's day-of-month AND day-of-week): years apart.
        ("0 12 29 2 mon", datetime(2027, 1, 1, tzinfo=UTC), [2044, 2072]),
    ],
)
def test_rare_dates_are_scheduled_however_far_apart_they_come(cron, after, expected):
    from scheduler.timing import slots_after

    task = crontab_task(f"rare {cron}", cron)
    slots = list(itertools.islice(slots_after(task, after), len(expected)))
    assert [slot.year for slot in slots] == expected and all(slot.month == 2 and slot.day == 29 for slot in slots)


def test_solar_slots_are_in_utc_to_the_second_the_same_each_time_and_strictly_increasing(settings):
    from scheduler.timing import slots_after

    # A site timezone with DST: Celery's own estimate put the sunrise an hour off across the change.
    settings.TIME_ZONE = "America/Chicago"
    solar = SolarSchedule.objects.create(event="sunrise", latitude=41.88, longitude=-87.63)
    task = periodic_task("sunrise in Chicago", solar=solar)
    before_change = datetime(2026, 3, 7, 18, tzinfo=UTC)  # DST begins 8 March 2026 in Chicago
    slots = list(itertools.islice(slots_after(task, before_change), 4))
    assert slots == list(itertools.islice(slots_after(task, before_change), 4)), "the same every time"
    assert all(slot.second == slot.microsecond == 0 and slot.tzinfo == UTC for slot in slots)
    assert all(earlier < later for earlier, later in zip(slots, slots[1:], strict=False))
    # Sunrise in Chicago in early March is around 12:10-12:20 UTC (06:10 CST, 07:05 CDT after the change).
    assert [slot.date().isoformat() for slot in slots] == ["2026-03-08", "2026-03-09", "2026-03-10", "2026-03-11"]
    assert all(11 <= slot.hour <= 13 for slot in slots)
    assert first_slot_after(task, slots[0]) == slots[1], "strictly after the slot asked from"
