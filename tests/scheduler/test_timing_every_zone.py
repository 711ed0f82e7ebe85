"""Crontab slots around every offset change of every zone in 2026-2028, against cron's rules.

An exhaustive sweep instead of random examples: each zone's changes are found, and for each,
the slots beat would compute over the two local days around it are compared with what the
wall clock of that zone says, read every quarter hour. Cron's rules (Vixie cron, as the README
says): a fixed wall time fires once per local day, at its first pass in a repeated hour and
right after the jump in a skipped one; a wildcard one fires at every pass of a matching wall
time, so twice in a repeated hour and never in a skipped one.
"""

import functools
import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from scheduler.timing import first_slot_after, slots_after
from tests.builders import crontab_of

pytestmark = [
    pytest.mark.django_db,
    # Slots are computed in Python from the crontab row; the database only stores the row. Once
    # per CI run is enough for a sweep of half a minute.
    pytest.mark.skipif(connection.vendor != "sqlite", reason="database-independent: swept once, on SQLite"),
]

YEARS_START, YEARS_END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)
# Every offset of these years, and so every change and every matching wall time of the crontabs
# below, falls on a quarter hour (Nepal is +05:45, Chatham +12:45); the sweep reads the clock
# that often and checks that this still holds.
STEP = timedelta(minutes=15)
FIXED = {"30 1 * * *": time(1, 30), "30 2 * * *": time(2, 30), "0 0 * * *": time(0, 0)}
WILDCARD = {"*/15 * * * *": {0, 15, 30, 45}, "30 * * * *": {30}, "0 * * * *": {0}}
# How far around a change the moments asked about go, every STEP and a microsecond before each.
ASKED_AROUND = timedelta(hours=3)


def offset_changes(zone: ZoneInfo) -> list[datetime]:
    """The UTC instants, to the minute, at which `zone`'s offset changes in 2026-2028."""
    changes, day = [], YEARS_START
    while day < YEARS_END:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            before, after = day, following  # no zone changes twice within a day
            while after - before > timedelta(minutes=1):
                middle = before + (after - before) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle.astimezone(zone).utcoffset() == before.astimezone(zone).utcoffset():
                    before = middle
                else:
                    after = middle
            changes.append(after)
        day = following
    return changes


@functools.cache
def zones_with_changes() -> dict[str, list[datetime]]:
    zones = {name: offset_changes(ZoneInfo(name)) for name in sorted(available_timezones())}
    return {name: changes for name, changes in zones.items() if changes}


def quarter_hours(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """(instant, wall time in `zone`) every STEP in (start, end]."""
    instant, read = start + STEP, []
    while instant <= end:
        read.append((instant, instant.astimezone(zone).replace(tzinfo=None)))
        instant += STEP
    return read


def expected_fixed(clock: list[tuple[datetime, datetime]], at: time) -> list[datetime]:
    """Once per local date: the first moment the wall clock reads `at` or later that date."""
    fired, slots = set(), []
    for instant, wall in clock:
        if wall.time() >= at and wall.date() not in fired:
            fired.add(wall.date())
            slots.append(instant)
    return slots


def expected_wildcard(clock: list[tuple[datetime, datetime]], minutes: set[int]) -> list[datetime]:
    """Every moment the wall clock reads a matching minute, however many times it does."""
    return [instant for instant, wall in clock if wall.minute in minutes]


def slots_between(task: PeriodicTask, start: datetime, end: datetime) -> list[datetime]:
    return list(itertools.takewhile(lambda slot: slot <= end, slots_after(task, start)))


def check_around(task: PeriodicTask, change: datetime, expected_of) -> None:
    zone = ZoneInfo(str(task.crontab.timezone))
    # The clock is read from a day earlier than compared, so a fixed time that passed before the
    # first compared moment counts as fired that date.
    clock = quarter_hours(zone, change - timedelta(days=2), change + timedelta(days=1, hours=12))
    assert all(wall.minute % 15 == 0 for _, wall in clock), f"{zone.key}: an offset off the quarter hour"
    start, end = change - timedelta(days=1), change + timedelta(days=1)
    every_expected = expected_of(clock)
    expected = [slot for slot in every_expected if start < slot <= end]
    slots = slots_between(task, start, end)
    cron = f"{task.crontab.minute} {task.crontab.hour} ({zone.key}) around {change.isoformat()}"
    assert all(earlier < later for earlier, later in itertools.pairwise(slots)), f"{cron}: not increasing"
    assert slots == expected, f"{cron}: slots {set(slots) ^ set(expected)} differ from cron's"
    moments = [
        change + k * STEP + nudge
        for k in range(-ASKED_AROUND // STEP, ASKED_AROUND // STEP + 1)
        for nudge in (timedelta(0), -timedelta(microseconds=1))
    ]
    for moment in moments:
        slot = first_slot_after(task, moment)
        assert slot > moment and slot == next(s for s in every_expected if s > moment), (
            f"{cron}: asked after {moment.isoformat()}, got {slot.isoformat()}"
        )


@pytest.mark.parametrize("zone_name", list(zones_with_changes()))
def test_crontab_slots_around_every_offset_change_follow_crons_rules(zone_name):
    changes = zones_with_changes()[zone_name]
    assert all(change.minute % 15 == 0 for change in changes), "the sweep reads the clock every quarter hour"
    expected = {cron: functools.partial(expected_fixed, at=at) for cron, at in FIXED.items()}
    expected |= {cron: functools.partial(expected_wildcard, minutes=minutes) for cron, minutes in WILDCARD.items()}
    for cron, expected_of in expected.items():
        # Unsaved: beat reads a schedule with its crontab row, and the timing code needs no more.
        task = PeriodicTask(name=f"{cron} in {zone_name}", crontab=crontab_of(cron, zone=zone_name))
        for change in changes:
            check_around(task, change, expected_of)


def test_the_sweep_covers_the_zones_with_changes_in_those_years():
    zones = zones_with_changes()
    # About 200 of the ~600 names: most of the Americas, Europe, south-east Australia, ...
    assert {"America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Auckland"} <= set(zones)
    assert "Asia/Tokyo" not in zones and "UTC" not in zones
    assert [change.isoformat() for change in zones["Australia/Lord_Howe"][:2]] == [
        "2026-04-04T15:00:00+00:00",
        "2026-10-03T15:30:00+00:00",
    ]
