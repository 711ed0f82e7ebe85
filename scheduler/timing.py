"""When a schedule fires: its slots, in its own timezone, DST included.

One function answers "the first slot after this moment" for every kind of django-celery-beat
schedule. Crontabs are evaluated by cronsim, which follows cron's own DST rules: a time that
does not exist on the spring-forward day fires once, right after the jump; a fixed-hour time
that occurs twice on the fall-back day fires once; a wildcard hour fires in both, so an hourly
job fires 23 and 25 times on those days. Celery's own crontab gets those days wrong.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab_parser
from cronsim import CronSim, CronSimError
from django_celery_beat.models import CrontabSchedule, PeriodicTask


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
        self.zone = ZoneInfo(str(crontab.timezone))
        fields = [_cron_field(getattr(crontab, name)) for name in (
            "minute", "hour", "day_of_month", "month_of_year", "day_of_week")]
        self.days_of_month = None
        if fields[2] != "*" and fields[4] != "*":
            self.days_of_month = crontab_parser(31, 1).parse(crontab.day_of_month)
            fields[2] = "*"
        self.expression = " ".join(fields)
        try:
            CronSim(self.expression, datetime.now(self.zone))
        except CronSimError as error:
            raise UnschedulableError(f"crontab {crontab.human_readable!r}: {error}") from error

    def first_after(self, moment: datetime) -> datetime | None:
        for fire in CronSim(self.expression, moment.astimezone(self.zone)):
            if self.days_of_month is None or fire.day in self.days_of_month:
                return fire.astimezone(UTC)
        return None


def first_slot_after(task: PeriodicTask, moment: datetime) -> datetime | None:
    """The first slot of `task` strictly after `moment` (UTC), or None when there is none."""
    if task.interval_id:
        return moment + interval_length(task)
    if task.crontab_id:
        return crontab_times(task).first_after(moment)
    if task.clocked_id:
        clocked_time = task.clocked.clocked_time
        return clocked_time if clocked_time > moment else None
    if task.solar_id:
        return _solar_after(task, moment)
    raise UnschedulableError("no schedule is set: choose an interval, crontab, solar or clocked schedule")


def first_slot_from(task: PeriodicTask, moment: datetime) -> datetime | None:
    """Where a new, changed or re-enabled schedule starts: no slot before `moment` is replayed.

    An interval starts at once, as in Celery; a clocked schedule keeps its one time even if it
    has passed, so a one-off created a little late still runs (the missed-run policy decides).
    """
    if task.start_time and task.start_time > moment:
        moment = task.start_time
        if task.interval_id:
            return moment
    if task.interval_id:
        return moment
    if task.clocked_id:
        return task.clocked.clocked_time
    return first_slot_after(task, moment)


def interval_length(task: PeriodicTask) -> timedelta:
    length = timedelta(**{task.interval.period: task.interval.every})
    if length <= timedelta(0):
        raise UnschedulableError(f"interval {task.interval}: must be longer than zero")
    return length


_crontab_cache: dict[tuple, CrontabTimes] = {}


def crontab_times(task: PeriodicTask) -> CrontabTimes:
    """Parsed once per distinct crontab row content: thousands of schedules often share one."""
    c = task.crontab
    key = (c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, str(c.timezone))
    if key not in _crontab_cache:
        _crontab_cache[key] = CrontabTimes(c)
    return _crontab_cache[key]


def _solar_after(task: PeriodicTask, moment: datetime) -> datetime | None:
    # Celery's solar schedule (ephem) answers relative to now; shift it to `moment`.
    schedule = task.solar.schedule
    try:
        remaining = schedule.remaining_estimate(moment)
    except Exception as error:  # ephem raises its own errors for polar days and nights
        raise UnschedulableError(f"solar {task.solar}: {error}") from error
    return schedule.now() + remaining
