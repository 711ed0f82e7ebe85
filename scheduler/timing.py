"""When a schedule fires: its slots, in its own timezone, DST included.

One function answers "the first slot after this moment" for every kind of django-celery-beat
schedule. Crontabs are evaluated by cronsim, which follows cron's own DST rules: a time that
does not exist on the spring-forward day fires once, right after the jump; a fixed-hour time
that occurs twice on the fall-back day fires once; a wildcard hour fires in both, so an hourly
job fires 23 and 25 times on those days. Celery's own crontab gets those days wrong.
"""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab_parser
from cronsim import CronSim, CronSimError
from django.conf import settings
from django_celery_beat.models import CrontabSchedule, PeriodicTask

# A crontab whose fields are each valid can still never match (the 31st of February that is a
# Monday, with Celery's day-of-month AND day-of-week); searching further than this from the last
# fire found says so instead of walking to the year 9999. One Gregorian cycle: every date and
# weekday that can ever come, comes within it.
NEVER_MATCHES_YEARS = 400
NEVER_MATCHES_AFTER = timedelta(days=146097)


class UnschedulableError(ValueError):
    """The schedule's definition cannot produce run times; the message says why."""


def _cron_field(value: str) -> str:
    # django-celery-beat stores Celery's syntax: lowercase names, spaces after commas.
    return value.replace(" ", "").upper() or "*"


class CrontabTimes:
    """A django-celery-beat crontab as cron times in the crontab's own timezone.

    Celery requires day-of-month AND day-of-week to match when both are restricted, where cron
    accepts either; to keep what the row means under Celery, cron is asked with day-of-month
    open and its answers are filtered by the day-of-month set.
    """

    def __init__(self, crontab: CrontabSchedule) -> None:
        fields = [_cron_field(getattr(crontab, name)) for name in (
            "minute", "hour", "day_of_month", "month_of_year", "day_of_week")]
        self.days_of_month = None
        try:
            self.zone = ZoneInfo(str(crontab.timezone))
            if fields[2] != "*" and fields[4] != "*":
                self.days_of_month = crontab_parser(31, 1).parse(crontab.day_of_month)
                fields[2] = "*"
            self.expression = " ".join(fields)
            CronSim(self.expression, datetime.now(self.zone))
        except (CronSimError, ValueError, KeyError) as error:
            raise UnschedulableError(f"crontab {' '.join(fields)} ({crontab.timezone}): {error}") from error

    def fires_after(self, moment: datetime) -> Iterator[datetime]:
        """Fire times strictly after `moment`, in UTC, for as long as asked.

        Two guards around cronsim. In the repeated hour of a fall-back day, a moment in its second
        pass (01:10 EST) comes back from cronsim as the first pass's wall time, the fold lost, so
        it may answer a fire that already passed (01:30 EDT): anything at or before `moment` is
        skipped. And "can never match" is judged from the last fire found, over a Gregorian cycle:
        29 February on a Monday comes every 28 years or so, and 2096 to 2104 has no 29 February.
        """
        moment = moment.astimezone(UTC)
        horizon = moment + NEVER_MATCHES_AFTER
        for fire in CronSim(self.expression, moment.astimezone(self.zone)):
            fire = fire.astimezone(UTC)
            if fire > horizon:
                raise UnschedulableError(f"crontab {self.expression}: matches no date in {NEVER_MATCHES_YEARS} years")
            if fire <= moment or (self.days_of_month is not None and fire.astimezone(self.zone).day
                                  not in self.days_of_month):
                continue
            horizon = fire + NEVER_MATCHES_AFTER
            yield fire


def slots_after(task: PeriodicTask, moment: datetime) -> Iterator[datetime]:
    """The slots of `task` strictly after `moment` (UTC), in order; raises UnschedulableError.

    One iterator walks many slots cheaply: beat uses it to enumerate what passed during downtime.
    """
    try:
        if task.interval_id:
            length = interval_length(task)
            yield from (moment + k * length for k in itertools.count(1))
        elif task.crontab_id:
            yield from crontab_times(task).fires_after(moment)
        elif task.clocked_id:
            if task.clocked.clocked_time > moment:
                yield task.clocked.clocked_time
        elif task.solar_id:
            slot = _solar_after(task, moment)
            while True:
                yield slot
                slot = _solar_after(task, slot)
        else:
            raise UnschedulableError("no schedule is set: choose an interval, crontab, solar or clocked schedule")
    except UnschedulableError:
        raise
    except Exception as error:
        # A row written outside the admin (ORM, SQL) can hold anything; say what, not crash.
        raise UnschedulableError(f"{type(error).__name__}: {error}") from error


def first_slot_after(task: PeriodicTask, moment: datetime) -> datetime | None:
    """The first slot of `task` strictly after `moment` (UTC), or None when there is none."""
    return next(slots_after(task, moment), None)


def first_slot_from(task: PeriodicTask, moment: datetime) -> datetime | None:
    """Where a new, changed or re-enabled schedule starts: no slot before `moment` is replayed.

    An interval starts at once, as in Celery; a clocked schedule keeps its one time even if it
    has passed, so a one-off created a little late still runs (the missed-run policy decides).
    """
    if task.start_time and task.start_time > moment:
        moment = task.start_time
    if task.interval_id:
        interval_length(task)
        return moment
    if task.clocked_id:
        return task.clocked.clocked_time
    # A start time exactly on a fire time fires then.
    return first_slot_after(task, moment - timedelta(microseconds=1))


def interval_length(task: PeriodicTask) -> timedelta:
    try:
        length = timedelta(**{task.interval.period: task.interval.every})
    except TypeError as error:
        raise UnschedulableError(f"interval {task.interval.every} {task.interval.period!r}: {error}") from error
    if length <= timedelta(0):
        raise UnschedulableError(f"interval {task.interval}: must be longer than zero")
    shortest = timedelta(seconds=settings.MIN_SCHEDULE_PERIOD_SECONDS)
    if length < shortest:
        # One microsecond wrote 14,700 ledger rows and queued 6,500 messages in 15 seconds.
        raise UnschedulableError(f"interval {task.interval}: shorter than the shortest period allowed, "
                                 f"{shortest.total_seconds():g} s (MIN_SCHEDULE_PERIOD_SECONDS)")
    return length


_crontab_cache: dict[tuple, CrontabTimes] = {}


def crontab_times(task: PeriodicTask) -> CrontabTimes:
    """Parsed once per distinct crontab row content: thousands of schedules often share one."""
    c = task.crontab
    key = (c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, str(c.timezone))
    if key not in _crontab_cache:
        _crontab_cache[key] = CrontabTimes(c)
    return _crontab_cache[key]


def _solar_after(task: PeriodicTask, moment: datetime) -> datetime:
    """The solar event's first time strictly after `moment`, in UTC, to the minute.

    Celery's own `remaining_estimate` reads ephem's UTC answer as a time in the app's timezone
    and subtracts the clock's now: an hour off across a DST change, and microseconds that differ
    from one call to the next, so one sunrise could be claimed as three slots. Here ephem is asked
    directly (through the schedule's observer and event), in UTC, and the answer is cut to the
    second, so the same event is always the same slot.
    """
    schedule = task.solar.schedule
    start = moment.astimezone(UTC).replace(tzinfo=None)
    for _ in range(3):
        schedule.cal.date = start
        found = schedule._next_event(schedule.ephem.Date(start)).datetime().replace(tzinfo=UTC)
        # To the nearest minute: ephem's answer for one event moves by a fraction of a second
        # with where the search starts, and a slot must be the same whoever computes it.
        event = (found + timedelta(seconds=30)).replace(second=0, microsecond=0)
        if event > moment:
            return event
        # The event asked from (rounded) comes back again: look a minute past it. One solar
        # event of a kind is never minutes from the next.
        start += timedelta(minutes=1)
    raise UnschedulableError(f"solar event {task.solar}: no time after {moment.isoformat()}")
