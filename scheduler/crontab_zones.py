"""A crontab whose timezone is not a zone (written past the admin: the ORM, SQL) is read as what
it says, not refused when the row loads.

django-timezone-field raises while converting the column, so one such row made every query that
reads crontabs fail: beat's sync stopped for every schedule, and the schedule list answered 500,
so the row could not even be fixed in the admin. Read here, the bad name stays a string: the
timing code then reports it on that schedule only (ZoneInfo refuses it), and the page shows it.
"""

from django.core.exceptions import ValidationError
from django_celery_beat.models import CrontabSchedule


class UnknownZone(str):
    """A timezone name that names no zone, as stored."""


def tolerate_unknown_zones() -> None:
    field = CrontabSchedule._meta.get_field("timezone")
    strict_from_db, strict_to_python = field.from_db_value, field.to_python

    def from_db_value(value, *args):
        try:
            return strict_from_db(value, *args)
        except ValidationError:
            return UnknownZone(value)

    def to_python(value):
        # The field's descriptor converts every value set on the model, the one just read too;
        # anything else (a form, the shell) is still refused.
        return value if isinstance(value, UnknownZone) else strict_to_python(value)

    field.from_db_value, field.to_python = from_db_value, to_python
