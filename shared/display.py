"""How times and durations read in the admin, the same on every page of every app."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils.timezone import localtime


def moment(value: datetime | None, *, same_day_as: datetime | None = None, zone: bool = False) -> str | None:
    """A time in the site's timezone, to the second; without its date when that is the day
    of `same_day_as`."""
    if value is None:
        return None
    local = localtime(value)
    shape = "%H:%M:%S" if same_day_as and local.date() == localtime(same_day_as).date() else "%Y-%m-%d %H:%M:%S"
    return local.strftime(f"{shape} %Z" if zone else shape)


def in_zone(value: datetime, zone: ZoneInfo, *, weekday: bool = False) -> str:
    """A time in another timezone (a schedule's own), with the seconds only when it has some."""
    local = value.astimezone(zone)
    shape = "%H:%M:%S" if local.second else "%H:%M"
    return local.strftime(f"{'%a ' if weekday else ''}%Y-%m-%d {shape} %Z")


def duration_in_words(duration: timedelta) -> str:
    seconds = duration.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def seconds_ago(value: datetime, *, now: datetime) -> int:
    return int((now - value).total_seconds())


def last_line(text: str, *, when_empty: str = "") -> str:
    """A traceback's last line says what went wrong (the whole one stays in the run ledger)."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else when_empty
