import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now
from django_celery_beat.models import CrontabSchedule

from scheduler.timing import CrontabTimes
from shared.addresses import email_list, validate_email_list
from shared.claims import Claim
from shared.display import in_zone


def site_timezone() -> str:
    return settings.TIME_ZONE


def validate_timezone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(f"{value!r} is not a timezone name; use one such as 'Europe/Berlin' or 'UTC'.")


def validate_days_of_week(value: str) -> None:
    try:
        CronSim(f"0 0 * * {value}", datetime(2000, 1, 1))
    except CronSimError as error:
        raise ValidationError(
            f"{value!r} is not a cron day-of-week field (e.g. '*', 'mon-fri', '1,3,5'): {error}"
        ) from error


def validate_report_name(value: str) -> None:
    # The name is the email's subject: with a line break in it every copy failed the mail's
    # header check at sending and stayed "sending".
    for character in value:
        if unicodedata.category(character) in ("Cc", "Zl", "Zp"):
            raise ValidationError(
                f"The name is the subject of the report's email: it must be one line, without line breaks or other "
                f"control characters (it holds U+{ord(character):04X})."
            )


def validate_recipients(value: str) -> None:
    # Named by migration 0001; the one list parser is shared.addresses'.
    validate_email_list(value)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """Where `day` begins in `zone`, in UTC.

    Where a DST change skips midnight itself (America/Santiago, America/Havana), 00:00 does not
    exist; zoneinfo reads it with the offset from before the jump, which lands exactly on the
    jump, the day's first moment.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def period_text(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """A covered period as people read it, in the report's timezone; the zone's abbreviation
    (EST, EDT) tells which pass of a repeated hour is meant."""
    return f"{in_zone(start, zone, weekday=True)} to {in_zone(end, zone, weekday=True)} ({zone.key})"


class Report(models.Model):
    """An emailed report: its sections, who gets it, and when (its own PeriodicTask)."""

    class Period(models.TextChoices):
        PREVIOUS_DAY = "previous_day", "The previous day"
        DAY_SO_FAR = "day_so_far", "The day so far"
        LAST_24_HOURS = "last_24_hours", "The 24 hours before the due time"
        PREVIOUS_WEEK = "previous_week", "The previous week (Monday to Sunday)"

    name = models.CharField(max_length=150, unique=True, validators=[validate_report_name])
    description = models.TextField(blank=True)
    recipients = models.TextField(
        blank=True, validators=[validate_recipients],
        help_text="Email addresses, one per line or separated by commas. Nothing is sent while this is empty.",
    )
    timezone = models.CharField(
        max_length=64, default=site_timezone, validators=[validate_timezone],
        help_text="The report is due at its time in this timezone; the days and weeks it covers are days here.",
    )
    send_at = models.TimeField(default=time(7, 0), help_text="Time of day the report is due.")
    days_of_week = models.CharField(
        max_length=64, default="*", validators=[validate_days_of_week],
        help_text="Cron day-of-week field: '*' for every day, 'mon-fri', '1,3,5'...",
    )
    # Existing reports were given DAY_SO_FAR by migration 0004: what they covered before.
    covered_period = models.CharField(
        max_length=16, choices=Period.choices, default=Period.PREVIOUS_DAY,
        help_text="What each run reports on, counted back from the time it is due, in the report's timezone: "
                  "the previous day (midnight to midnight), the day so far (midnight to the due time), the 24 "
                  "hours before the due time, or the previous week (Monday 00:00 to Monday 00:00). A day across "
                  "a DST change is 23 or 25 hours long.",
    )
    enabled = models.BooleanField(
        default=True, help_text="Its schedule runs only while the report is enabled and has a recipient.",
    )
    # Created and kept in step with the fields above by reports.services.report_schedule_sync.
    schedule = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, editable=False,
        on_delete=models.SET_NULL, related_name="report",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def recipient_list(self) -> list[str]:
        # In order, without repeats: one delivery row per address.
        return email_list(self.recipients)

    def is_due_to_run(self) -> bool:
        return self.enabled and bool(self.recipient_list())

    def has_sql_sections(self) -> bool:
        """Whether building the report runs SQL (reports.permissions: who may have it built)."""
        return self.pk is not None and self.sections.filter(kind=ReportSection.Kind.SQL).exists()

    def run_day(self, slot: datetime) -> date:
        """The day of the run for `slot` (ReportRun.covered_day): the slot's date where the report is read."""
        return slot.astimezone(self.zone).date()

    def period_for(self, slot: datetime) -> tuple[datetime, datetime]:
        """The [start, end) in UTC that the run for `slot` covers, by the report's covered_period.

        Days and weeks run from local midnight to local midnight (23 or 25 hours across a DST
        change); the 24 hours before the slot are absolute time. Every period ends at the slot
        or before it, end excluded, so the report's own run, due at the slot and still running
        while the report is built, is never counted in it.
        """
        # In UTC: Python subtracts within one zone by the wall clock (always 24 hours).
        slot = slot.astimezone(UTC)
        day = self.run_day(slot)
        if self.covered_period == self.Period.PREVIOUS_DAY:
            return local_midnight(day - timedelta(days=1), self.zone), local_midnight(day, self.zone)
        if self.covered_period == self.Period.DAY_SO_FAR:
            return local_midnight(day, self.zone), slot
        if self.covered_period == self.Period.LAST_24_HOURS:
            return slot - timedelta(hours=24), slot
        if self.covered_period == self.Period.PREVIOUS_WEEK:
            monday = day - timedelta(days=day.weekday())
            return local_midnight(monday - timedelta(weeks=1), self.zone), local_midnight(monday, self.zone)
        raise ValueError(f"covered_period: {self.covered_period!r} is not one of {', '.join(self.Period.values)}")

    def crontab_fields(self, *, days_of_week: str | None = None) -> dict:
        """The cron fields of the report's schedule (reports.services.report_schedule_sync)."""
        return {"minute": str(self.send_at.minute), "hour": str(self.send_at.hour), "day_of_month": "*",
                "month_of_year": "*", "day_of_week": days_of_week or self.days_of_week, "timezone": self.timezone}

    def slot_on(self, day: date) -> datetime:
        """When the report is due on `day` (for runs started by hand for a given day), as the
        scheduler would have it: a time the spring-forward jump skips is due right after the
        jump, a time the fall-back day repeats once. Any day, even one outside days_of_week."""
        times = CrontabTimes(CrontabSchedule(**self.crontab_fields(days_of_week="*")))
        # Strictly after: a report due at 00:00 is due at the day's first moment.
        return next(times.fires_after(local_midnight(day, self.zone) - timedelta(microseconds=1)))


class ReportSection(models.Model):
    class Kind(models.TextChoices):
        OPERATIONS_SUMMARY = "operations_summary", "Operations summary"
        SQL = "sql", "SQL query"

    class Chart(models.TextChoices):
        NONE = "none", "No chart"
        LINE = "line", "Line chart"
        BAR = "bar", "Bar chart"

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="sections")
    position = models.PositiveIntegerField(default=0, help_text="Sections appear in this order.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=150)
    data_source = models.CharField(
        max_length=64, default="default", blank=True,
        # No angle brackets: the admin shows help texts as HTML.
        help_text="'default': this site's own database (read as REPORT_SOURCE_DEFAULT_URL's role when that is "
                  "set). Any other name is read from the variable REPORT_SOURCE_{NAME}_URL, the name in capitals.",
    )
    query = models.TextField(blank=True, help_text="One SELECT statement; it runs in a read-only transaction.")
    timeout_seconds = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), MaxValueValidator(600)])
    row_limit = models.PositiveIntegerField(
        default=10_000, validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="At most this many rows are read; the email says when the result was cut.",
    )
    # Null: the site's REPORT_SECTION_BYTES. At most 20 MB: past about 3.7 MB the CSV is too big
    # to attach anyway (the archive keeps it), and a worker holds all of it while the email is built.
    byte_limit = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(10_000), MaxValueValidator(20_000_000)],
        help_text="Rows are read while their values fit in this many bytes, each value cut to REPORT_CELL_BYTES; "
                  "blank: REPORT_SECTION_BYTES (2,000,000 unless set). The email says what was cut.",
    )
    chart = models.CharField(max_length=8, choices=Chart.choices, default=Chart.NONE)
    chart_x = models.CharField("x column", max_length=150, blank=True)
    chart_y = models.CharField("y column", max_length=150, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind != self.Kind.SQL:
            return
        from reports.sources import QueryRefused, data_source_url, select_statement

        errors = {}
        if not self.query.strip():
            errors["query"] = "A SQL section needs a query."
        else:
            try:
                select_statement(self.query)
            except QueryRefused as error:
                errors["query"] = str(error)
        try:
            data_source_url(self.data_source or "default")
        except QueryRefused as error:
            errors["data_source"] = str(error)
        if self.chart != self.Chart.NONE:
            for field in ("chart_x", "chart_y"):
                if not getattr(self, field).strip():
                    errors[field] = f"A {self.get_chart_display().lower()} needs its {field[-1]} column's name."
        if errors:
            raise ValidationError(errors)


class ReportRun(models.Model):
    """One report built for one day's slot: the archived email, the period it covered and how it
    was delivered.

    Unique per (report, day): a task delivered twice, a retry and `send_report` for the same
    day all land on this row and send what it archived, never a second version.
    """

    class Status(models.TextChoices):
        OK = "ok", "OK"
        PARTIAL = "partial", "Partial: a section failed"
        FAILED = "failed", "Failed: not built"

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="runs")
    # The slot's day, which is the covered day for "the day so far" (what every report covered
    # before covered_period); the period itself is period_start to period_end.
    covered_day = models.DateField("day due", help_text="The day the run was due, in the report's timezone.")
    scheduled_for = models.DateTimeField(help_text="The slot the run is for (for runs by hand: the day's due time).")
    # Null only for rows written by other means than the services (migration 0004 filled older ones).
    period_start = models.DateTimeField(null=True, blank=True, help_text="The start of the period the run covers.")
    period_end = models.DateTimeField(null=True, blank=True, help_text="The end of the period it covers, excluded.")
    status = models.CharField(max_length=10, choices=Status.choices)
    subject = models.CharField(max_length=300, blank=True)
    html = models.TextField(blank=True, help_text="The HTML part as sent; images by cid:.")
    text = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Why sections failed, or why the report could not be built.")
    built_at = models.DateTimeField()

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [models.UniqueConstraint(fields=["report", "covered_day"], name="reports_run_one_per_day")]
        indexes = [models.Index(fields=["-scheduled_for"], name="reports_run_newest")]

    def __str__(self) -> str:
        return f"{self.report} for {self.covered_day:%Y-%m-%d}"

    def period_text(self) -> str:
        if self.period_start is None or self.period_end is None:
            return ""
        return period_text(self.period_start, self.period_end, self.report.zone)


class ReportFile(models.Model):
    """A chart or CSV of a run, kept for download even when it was too big to attach.

    The foreign key cascades in the database too (migration 0002): the retention engine
    deletes old runs with one DELETE, without Django's cascade.
    """

    class Kind(models.TextChoices):
        CHART = "chart", "Chart (inline image)"
        CSV = "csv", "CSV table"

    run = models.ForeignKey(ReportRun, on_delete=models.CASCADE, related_name="files")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    content_id = models.CharField(max_length=100, blank=True, help_text="How the HTML refers to an inline image.")
    content = models.BinaryField()
    size = models.PositiveIntegerField()
    attached = models.BooleanField(default=True, help_text="False: over the size cap, left out of the email.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.filename


# A delivery's claim while its message goes out. Never renewed: one attempt is a few SMTP steps
# of at most reports.delivery.SMTP_TIMEOUT_SECONDS each, far less than this; short enough that a
# copy whose worker was killed mid-send still goes out the same morning.
DELIVERY_CLAIM = Claim(holder_field="claimed_by", until_field="claimed_until", lasts=timedelta(minutes=10))


class ReportDelivery(models.Model):
    """One recipient's copy of one run. Claimed (DELIVERY_CLAIM) just before it is sent."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(ReportRun, on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.EmailField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Nullable, against Django's habit for text: SQLite adds a nullable column in place, where
    # a NOT NULL one makes Django remake the table and drop its ON DELETE CASCADE (0002).
    claimed_by = models.CharField(max_length=255, null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # A "sending" row whose claim has lapsed lost its worker mid-send: it may be claimed again.
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="The mail server's reply to the last failed attempt.")

    class Meta:
        ordering = ["recipient"]
        verbose_name_plural = "report deliveries"
        constraints = [
            models.UniqueConstraint(fields=["run", "recipient"], name="reports_delivery_one_per_recipient"),
        ]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.get_status_display()}"

    def is_stale_sending(self) -> bool:
        return self.status == self.Status.SENDING and DELIVERY_CLAIM.is_stale(self, now=now())


# A preview no worker has taken after this long will not be taken soon: the page says so
# rather than wait for ever (reports.admin_views).
PREVIEW_START_GRACE = timedelta(minutes=1)
# The worker's hard limit on a preview's build passes its soft limit by this much, and the page
# stops waiting for a started build this long after that.
PREVIEW_KILL_SECONDS = 15


class ReportPreview(models.Model):
    """A report built for one day by a worker at one staff member's request, shown to them only.

    Built in a worker with the sections' timeouts, not in the web request: a heavy report ran past
    the web server's timeout and got its process killed. Kept by the report_previews retention
    target; a staff member's new preview of a report replaces their finished ones.
    """

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for a worker"
        BUILDING = "building", "Being built"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="previews")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(help_text="The day previewed, in the report's timezone.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    time_limit_seconds = models.PositiveIntegerField(
        help_text="The worker's soft time limit for the build: the SQL sections' timeouts and a margin.",
    )
    requested_at = models.DateTimeField(default=now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    page = models.TextField(blank=True, help_text="The email's HTML with its charts embedded, as a browser shows it.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"Preview of {self.report} for {self.day:%Y-%m-%d}"

    def is_finished(self) -> bool:
        return self.status in (self.Status.READY, self.Status.FAILED)

    def gave_up_because(self, *, now: datetime) -> str:
        """Why the page no longer waits for this preview; "" while it may still come."""
        if self.status == self.Status.WAITING and now - self.requested_at > PREVIEW_START_GRACE:
            return (f"No worker took the preview within {PREVIEW_START_GRACE.total_seconds():.0f} seconds: is a "
                    "worker reading the reports queue running? Open Preview now again once one is.")
        limit = timedelta(seconds=self.time_limit_seconds + 2 * PREVIEW_KILL_SECONDS)
        if self.status == self.Status.BUILDING and now - self.started_at > limit:
            return (f"The worker that took the preview did not finish it within its time limit of "
                    f"{self.time_limit_seconds} seconds (the SQL sections' timeouts and a margin): it stopped or was "
                    "killed. See the worker's log.")
        return ""
