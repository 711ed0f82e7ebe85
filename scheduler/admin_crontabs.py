"""The crontab editor: django-celery-beat's five boxes with one cron expression field beside
them (pasting a whole expression into *Minute* is what people do), refusing a crontab that can
never fire, which the stock form saved with a success message."""

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_celery_beat import validators
from django_celery_beat.admin import CrontabScheduleAdmin as BeatCrontabScheduleAdmin
from django_celery_beat.models import CrontabSchedule

from scheduler.timing import CrontabTimes, UnschedulableError

EXPRESSION_FIELD = "cron_expression"
# The boxes in cron's order, with how the expression's errors name each.
FIELDS = {
    "minute": ("Minute", validators.minute_validator),
    "hour": ("Hour", validators.hour_validator),
    "day_of_month": ("Day of month", validators.day_of_month_validator),
    "month_of_year": ("Month", validators.month_of_year_validator),
    "day_of_week": ("Day of week", validators.day_of_week_validator),
}
DATE_FIELDS = ("day_of_month", "month_of_year", "day_of_week")
# cron's shorthands (crontab(5)); @reboot has no time of day to run at.
ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


def crontab_expression(boxes) -> str:
    """The five fields of a crontab (a row, or a dict of its boxes) as one cron expression."""
    values = boxes if isinstance(boxes, dict) else {field: getattr(boxes, field) for field in FIELDS}
    return " ".join(values.get(field) or "" for field in FIELDS)


def crontab_unschedulable(crontab: CrontabSchedule) -> UnschedulableError | None:
    """Why `crontab` can never fire, as the timing layer decides it over a Gregorian cycle."""
    try:
        next(CrontabTimes(crontab).fires_after(timezone.now()), None)
    except UnschedulableError as error:
        return error
    return None


def cron_fields(expression: str) -> dict[str, str]:
    """The five boxes of a cron expression or shorthand; raises ValidationError saying what is wrong."""
    text = ALIASES.get(expression.strip().lower(), expression.strip())
    if text.startswith("@"):
        raise ValidationError(f"{text} is not a shorthand that names a time; use one of {', '.join(ALIASES)}, "
                              "or five fields.")
    parts = text.split()
    if len(parts) != len(FIELDS):
        raise ValidationError(f"A cron expression has five fields (minute hour day-of-month month day-of-week), "
                              f"e.g. 30 2 * * 1-5 for 02:30 on weekdays; this one has {len(parts)}.")
    problems = []
    for (label, validate), part in zip(FIELDS.values(), parts, strict=True):
        try:
            validate(part)
        except ValidationError as error:
            problems.append(f"{label} {part}: {' '.join(error.messages)}")
    if problems:
        raise ValidationError(problems)
    return dict(zip(FIELDS, parts, strict=True))


def _boxes_valid(boxes: dict[str, str]) -> bool:
    try:
        for field, (_, validate) in FIELDS.items():
            validate(boxes[field])
    except ValidationError:
        return False
    return True


def _same_crontab(first: dict[str, str], second: dict[str, str]) -> bool:
    # Celery's syntax allows spaces after commas and names in either case.
    return all(first[field].replace(" ", "").lower() == second[field].replace(" ", "").lower() for field in FIELDS)


class CrontabScheduleForm(forms.ModelForm):
    cron_expression = forms.CharField(
        label="Cron expression", required=False, max_length=200,
        help_text="All five fields at once, as in a crontab: minute hour day-of-month month day-of-week, e.g. "
                  "30 2 * * 1-5 for 02:30 on weekdays, or a shorthand such as @daily or @hourly. It fills the "
                  "five boxes below; change either, not both.",
    )

    class Meta:
        model = CrontabSchedule
        fields = [EXPRESSION_FIELD, *FIELDS, "timezone"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial.setdefault(EXPRESSION_FIELD, crontab_expression(self.instance))
        for field in FIELDS:
            # The expression may fill them instead; the model still refuses one left empty.
            self.fields[field].required = False

    def clean(self) -> dict:
        data = super().clean()
        pasted = data.get("minute") or ""
        if len(pasted.split()) == len(FIELDS) or pasted.startswith("@"):
            self.add_error("minute", f"{pasted} is a whole cron expression: enter it in Cron expression above, "
                                     "which fills all five boxes.")
            return data
        expression = (data.get(EXPRESSION_FIELD) or "").strip()
        used = bool(expression) and EXPRESSION_FIELD in self.changed_data
        if used and not self._fill_boxes(data, expression):
            return data
        boxes = {field: data.get(field) or "" for field in FIELDS}
        if "timezone" in data and _boxes_valid(boxes):
            self._refuse_if_never_fires(CrontabSchedule(**boxes, timezone=data["timezone"]),
                                        named=[EXPRESSION_FIELD] if used else None)
        return data

    def _fill_boxes(self, data: dict, expression: str) -> bool:
        """Put the expression's fields in the boxes; False when it was refused."""
        try:
            fields = cron_fields(expression)
        except ValidationError as error:
            self.add_error(EXPRESSION_FIELD, error)
            return False
        boxes = {field: data.get(field) or "" for field in FIELDS}
        if any(field in self.changed_data for field in FIELDS) and not _same_crontab(boxes, fields):
            self.add_error(EXPRESSION_FIELD, f"The expression says {expression} but the boxes below say "
                                             f"{crontab_expression(boxes)}: change one of them, not both.")
            return False
        data.update(fields)
        return True

    def _refuse_if_never_fires(self, crontab: CrontabSchedule, *, named: list[str] | None) -> None:
        error = crontab_unschedulable(crontab)
        if error is None:
            return
        restricted = [field for field in DATE_FIELDS if getattr(crontab, field) != "*"]
        dates = ", ".join(f"{FIELDS[field][0].lower()} {getattr(crontab, field)}" for field in restricted)
        message = f"This crontab can never run: no date matches {dates} ({error})."
        for field in named or restricted or [None]:
            self.add_error(field, message)


class CrontabScheduleAdmin(BeatCrontabScheduleAdmin):
    form = CrontabScheduleForm
    fields = ("human_readable", EXPRESSION_FIELD, *FIELDS, "timezone")
