"""When a schedule fires: its slots, in its own timezone, DST included.

One function answers "the first slot after this moment" for every kind of django-celery-beat
schedule. Crontabs follow cron's own DST rules (Vixie cron): a fixed wall time that does not
exist on the spring-forward day fires once, right after the jump; one that occurs twice on the
fall-back day fires at its first pass only; a wildcard one (minute or hour `*`) fires at every
pass of a matching wall time, so an hourly job fires 23 and 25 times on those days. Celery's own
crontab gets those days wrong.
"""

import heapq
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
        fields = [
            _cron_field(getattr(crontab, name))
            for name in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        ]
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
        # As cron decides it: a star at the start of the minute or the hour makes a wildcard job.
        self.fixed_time = not fields[0].startswith("*") and not fields[1].startswith("*")

    def fires_after(self, moment: datetime) -> Iterator[datetime]:
        """Fire times strictly after `moment`, in UTC, in order, for as long as asked.

        "Can never match" is judged from the last fire found, over a Gregorian cycle: 29 February
        on a Monday comes every 28 years or so, and 2096 to 2104 has no 29 February.
        """
        after = moment.astimezone(UTC)
        horizon = after + NEVER_MATCHES_AFTER
        for fire, day in self._fires_from(self._first_wall_to_read(after)):
            if fire > horizon:
                raise UnschedulableError(f"crontab {self.expression}: matches no date in {NEVER_MATCHES_YEARS} years")
            # Wall times are read from before `moment` (the repeated hour), and two of one skipped
            # hour both fire right after the jump: each slot once, and only after `moment`.
            if fire <= after or (self.days_of_month is not None and day not in self.days_of_month):
                continue
            after, horizon = fire, fire + NEVER_MATCHES_AFTER
            yield fire

    def _first_wall_to_read(self, moment: datetime) -> datetime:
        # In the first pass of a repeated hour, or up to it, the wall times of the second pass
        # are still to come although the clock has passed them: read from where it will be set
        # back to. (No zone changes its offset twice within a day.)
        offset = min(
            moment.astimezone(self.zone).utcoffset(), (moment + timedelta(days=1)).astimezone(self.zone).utcoffset()
        )
        return (moment + offset).replace(tzinfo=None)

    def _fires_from(self, wall: datetime) -> Iterator[tuple[datetime, int]]:
        """(fire time, day of the month) of the wall times matched after `wall`, in order of
        fire time, some before `wall`.

        cronsim is asked for wall times only (naive): given a zone, it measures a wildcard job's
        jump to its minute on the wall clock and makes it in UTC, so across a change of half an
        hour (Lord Howe) it jumps past a wall time, 02:30 on the spring day and the second 01:30
        in autumn. Each wall time is turned into its passes here; a second pass is held back
        until the first passes before it are given (01:00 EST comes after 01:45 EDT).
        """
        second_passes: list[tuple[datetime, int]] = []
        for matched in CronSim(self.expression, wall):
            passes = self._passes(matched)
            if not passes:
                continue
            while second_passes and second_passes[0][0] <= passes[0]:
                yield heapq.heappop(second_passes)
            yield passes[0], matched.day
            for later in passes[1:]:
                heapq.heappush(second_passes, (later, matched.day))

    def _passes(self, wall: datetime) -> list[datetime]:
        """When the job fires for the matched wall time `wall`: none, one or two UTC times."""
        first, second = wall.replace(tzinfo=self.zone), wall.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return [first.astimezone(UTC)]
        if _exists(first):
            # The repeated hour: a wildcard job fires at both passes, a fixed one at the first.
            return [first.astimezone(UTC)] if self.fixed_time else [first.astimezone(UTC), second.astimezone(UTC)]
        if not self.fixed_time:
            return []
        # A fixed job's time in the skipped hour fires right after the jump, at the first minute
        # the clock reads again.
        while not _exists(first):
            first += timedelta(minutes=1)
        return [first.astimezone(UTC)]


def _exists(wall: datetime) -> bool:
    """Whether the zone's clock ever reads `wall` (aware): not in the hour a spring change skips."""
    return wall.astimezone(UTC).astimezone(wall.tzinfo).replace(tzinfo=None) == wall.replace(tzinfo=None)


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


# An interval longer than a century is a typing mistake (a run that far off is a clocked
# schedule), and far longer ones overflow Python's dates: 999,999,999,999 days saved, then the
# schedule's page answered 500.
LONGEST_INTERVAL = timedelta(days=36525)


def interval_too_long(*, every: int, period: str) -> str:
    """Why an interval of `every` `period` is refused for its length; "" when it is not."""
    try:
        if timedelta(**{period: every}) <= LONGEST_INTERVAL:
            return ""
    except OverflowError:
        pass
    return (f"{every:,} {period} is more than a century, the longest interval allowed; for a run that far ahead "
            "use a clocked schedule")


def interval_length(task: PeriodicTask) -> timedelta:
    try:
        length = timedelta(**{task.interval.period: task.interval.every})
    except TypeError as error:
        raise UnschedulableError(f"interval {task.interval.every} {task.interval.period!r}: {error}") from error
    except OverflowError:
        length = None
    if length is None or length > LONGEST_INTERVAL:
        interval = task.interval
        raise UnschedulableError(f"interval {interval_too_long(every=interval.every, period=interval.period)}")
    if length <= timedelta(0):
        raise UnschedulableError(f"interval {task.interval}: must be longer than zero")
    shortest = timedelta(seconds=settings.MIN_SCHEDULE_PERIOD_SECONDS)
    if length < shortest:
        # One microsecond wrote 14,700 ledger rows and queued 6,500 messages in 15 seconds.
        raise UnschedulableError(
            f"interval {task.interval}: shorter than the shortest period allowed, "
            f"{shortest.total_seconds():g} s (MIN_SCHEDULE_PERIOD_SECONDS)"
        )
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
