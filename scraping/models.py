import re
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from scraping.extract import ExtractError, Extractor, Kind
from shared.claims import Claim

# A source's claim while one fetch of it runs (a scheduled run, a run by hand, a redelivery):
# never renewed, since a fetch is bounded by the fetcher's total deadline twice over (robots.txt
# and the page) plus a few writes; a killed worker's claim lapses before the next period.
SOURCE_CLAIM = Claim(holder_field="claimed_by", until_field="claimed_until", lasts=timedelta(minutes=3))


def ignore_rules(text: str) -> tuple[str, ...]:
    """The source's ignore rules as regular expressions: `/.../` is one already, any other line is
    text to find anywhere in a line."""
    rules = []
    for line in (text or "").splitlines():
        line = line.strip()
        if len(line) > 1 and line.startswith("/") and line.endswith("/"):
            rules.append(line[1:-1])
        elif line:
            rules.append(re.escape(line))
    return tuple(rules)


class Source(models.Model):
    """A web page (or JSON document) watched for changes: what to fetch, what part of it to
    compare, how often (its own PeriodicTask, as a report has), and how politely."""

    class Health(models.TextChoices):
        NEW = "new", "Not fetched yet"
        OK = "ok", "OK"
        STALE = "stale", "Stale"
        FAILING = "failing", "Failing"
        BLOCKED = "blocked", "Blocked"

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    url = models.CharField(
        "URL", max_length=2000,
        help_text="http or https only, on ports 80 and 443 unless another is allowed below. Checked by the "
                  "same gate as every fetch when saved.",
    )
    extract = models.CharField(
        max_length=10, choices=[(kind.value, label) for kind, label in (
            (Kind.TEXT, "The page's readable text"), (Kind.CSS, "CSS selector"), (Kind.XPATH, "XPath 1.0"),
            (Kind.JSONPATH, "JSONPath (JSON responses)"))],
        default=Kind.TEXT.value,
    )
    expression = models.TextField(
        blank=True, help_text="The CSS selector, XPath or JSONPath; empty for the whole page.",
    )
    ignore = models.TextField(
        blank=True,
        help_text="Lines left out before comparing, one rule per line: text found anywhere in a line, or a "
                  "regular expression between slashes (/^Updated .*/).",
    )
    every_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
        help_text="Fetched every this many minutes (its schedule, kept in step when the source is saved).",
    )
    enabled = models.BooleanField(default=True, help_text="Its schedule runs only while the source is enabled.")
    min_delay_seconds = models.PositiveIntegerField(
        "minimum delay", null=True, blank=True, validators=[MaxValueValidator(3600)],
        help_text="At least this many seconds between requests to this source's host, by every worker, "
                  "when longer than the default (SCRAPER_HOST_INTERVAL_SECONDS) and robots.txt's Crawl-delay.",
    )
    allowed_port = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="A port besides 80 and 443 that this source may be fetched on.",
    )
    schedule = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, editable=False,
        on_delete=models.SET_NULL, related_name="scraping_source",
    )
    baseline = models.ForeignKey(
        "Snapshot", null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+",
        help_text="The approved content changes are compared with.",
    )
    # The last fetch's validators, sent on the next fetch (conditional GET).
    etag = models.CharField(max_length=500, blank=True, editable=False)
    last_modified = models.CharField(max_length=100, blank=True, editable=False)
    # SOURCE_CLAIM's columns. Nullable: SQLite adds a nullable column in place.
    claimed_by = models.CharField(max_length=255, null=True, blank=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    # What the last fetches found, for its health (scraping.health).
    last_fetch_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_outcome = models.CharField(max_length=30, blank=True, editable=False)
    last_detail = models.TextField(blank=True, editable=False)
    last_ok_at = models.DateTimeField(null=True, blank=True, editable=False)
    failures_in_row = models.PositiveIntegerField(default=0, editable=False)
    last_hash = models.CharField(max_length=64, blank=True, editable=False,
                                 help_text="The content hash of the last extract stored.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def extractor(self) -> Extractor:
        return Extractor(Kind(self.extract), self.expression.strip(), ignore_rules(self.ignore))

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.allowed_port,) if self.allowed_port else ()

    @property
    def period(self) -> timedelta:
        return timedelta(minutes=self.every_minutes)

    def host_interval_seconds(self, crawl_delay: float | None = None) -> float:
        """The least time between two requests to this source's host: the longest of the default,
        this source's own minimum delay and the host's Crawl-delay."""
        return max(settings.SCRAPER_HOST_INTERVAL_SECONDS, float(self.min_delay_seconds or 0),
                   float(crawl_delay or 0))

    def clean(self) -> None:
        from scraping.gate import Refused, url_target

        errors = {}
        try:
            url_target(self.url, ports=self.ports, allowed=settings.OUTBOUND_ALLOWED_NETWORKS)
        except Refused as refused:
            errors["url"] = " ".join(filter(None, [f"Refused by the gate: {refused.rule}.", refused.hint]))
        try:
            Extractor(Kind(self.extract), self.expression.strip()).check()
        except ExtractError as error:
            errors["expression"] = f"{str(error).capitalize()}."
        try:
            Extractor(Kind.TEXT, "", ignore_rules(self.ignore)).check()
        except ExtractError as error:
            errors["ignore"] = f"{str(error).capitalize()}."
        if self.allowed_port in (80, 443):
            errors["allowed_port"] = f"Port {self.allowed_port} is always allowed; leave this empty."
        if errors:
            raise ValidationError(errors)


class Snapshot(models.Model):
    """One distinct content of a source's extract: stored once per hash, seen again any number of
    times (last_seen_at moves on)."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="snapshots")
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the normalised extract.")
    text = models.TextField()
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["source", "content_hash"], name="scraping_snapshot_once")]
        indexes = [models.Index(fields=["last_seen_at"], name="scraping_snapshot_seen")]

    def __str__(self) -> str:
        return f"{self.source} {self.content_hash[:12]} ({self.first_seen_at:%Y-%m-%d %H:%M})"


class Change(models.Model):
    """An extract that differs from the source's baseline, waiting for (or past) a reviewer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending review"
        APPROVED = "approved", "Approved: the new baseline"
        REJECTED = "rejected", "Rejected: not raised again"
        IGNORED = "ignored", "Ignored"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="changes")
    # Links without a database constraint, here and below, go to rows the retention engine may
    # remove with a raw DELETE (the run ledger, old snapshots): the link then leads nowhere.
    before = models.ForeignKey(Snapshot, null=True, on_delete=models.DO_NOTHING, db_constraint=False,
                               related_name="+", help_text="The baseline when the change was raised.")
    after = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="changes")
    diff = models.TextField(help_text="Unified diff of the baseline and the new extract.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    raised_at = models.DateTimeField(db_index=True)
    run = models.ForeignKey("scheduler.ScheduleRun", null=True, blank=True, on_delete=models.DO_NOTHING,
                            db_constraint=False, related_name="+", help_text="The run whose fetch raised it.")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            # One open change per content: a page that stays changed is not raised at every fetch.
            models.UniqueConstraint(fields=["source", "after"], condition=models.Q(status="pending"),
                                    name="scraping_change_one_pending"),
        ]
        indexes = [models.Index(fields=["status", "-raised_at"], name="scraping_change_status")]

    def __str__(self) -> str:
        return f"{self.source} at {self.raised_at:%Y-%m-%d %H:%M}"


class FetchRecord(models.Model):
    """One fetch of a source (not a Test fetch, which stores nothing): what it found and why."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="fetches")
    run = models.ForeignKey("scheduler.ScheduleRun", null=True, blank=True, on_delete=models.DO_NOTHING,
                            db_constraint=False, related_name="+")
    fetched_at = models.DateTimeField()
    # The fetcher's Outcome, or what came after it: extract_failed, empty.
    outcome = models.CharField(max_length=30)
    status = models.PositiveIntegerField(null=True, blank=True, help_text="The HTTP status.")
    detail = models.TextField(blank=True)
    final_url = models.CharField(max_length=2000, blank=True)
    bytes = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    snapshot = models.ForeignKey(Snapshot, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                 related_name="+")
    change = models.ForeignKey(Change, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                               related_name="+")

    class Meta:
        ordering = ["-fetched_at", "-id"]
        indexes = [
            models.Index(fields=["-fetched_at"], name="scraping_fetch_newest"),
            models.Index(fields=["source", "-fetched_at"], name="scraping_fetch_source_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.source} at {self.fetched_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"
