from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from cleanup.targets import retention_targets


class RetentionPolicy(models.Model):
    """How long one target's rows are kept; seeded per target, edited in the admin."""

    target = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True, help_text="Disabled targets are left out of scheduled sweeps.")
    max_age_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Rows older than this many days may go. Empty: keep them (age-based targets only).",
    )
    keep_last = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Always keep this many newest rows (per group, where the target has groups).",
    )
    batch_size = models.PositiveIntegerField(
        default=2000, validators=[MinValueValidator(1), MaxValueValidator(20_000)],
        help_text="Rows deleted by the first short transaction; later ones adapt to the target duration.",
    )
    batch_target_ms = models.PositiveIntegerField(
        "batch target (ms)", null=True, blank=True, default=50, validators=[MinValueValidator(1)],
        help_text=(
            "Batches grow or shrink so each delete takes about this long: other writers wait at most "
            "about this long. Empty: every batch is batch size rows."
        ),
    )
    time_budget_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1)],
        help_text="A run stops cleanly after this long; the next run goes on where it stopped.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["target"]

    def __str__(self) -> str:
        return self.target

    def clean(self) -> None:
        target = retention_targets().get(self.target)
        if target is None:
            known = ", ".join(sorted(retention_targets()))
            # Not keyed to the field: the admin shows target read-only, so a field error would
            # have nowhere to go.
            raise ValidationError(f"Unknown retention target {self.target!r}; known targets: {known}.")
        if target.expiry_field and self.max_age_days is not None:
            raise ValidationError({"max_age_days": (
                f"{self.target} rows go when they expire ({target.expiry_field}); a max age does not apply."
            )})


class CleanupRun(models.Model):
    """One run of the engine over one target: what it matched, deleted, and how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        STOPPED_ON_BUDGET = "stopped_on_budget", "Stopped on time budget"
        SKIPPED = "skipped"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual", "Run now"
        COMMAND = "command"

    target = models.CharField(max_length=100)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_matched = models.PositiveBigIntegerField(default=0, help_text="Removable rows the run found.")
    rows_deleted = models.PositiveBigIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    holder = models.CharField(max_length=200, blank=True, help_text="The process that ran it.")

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["target", "-started_at"]), models.Index(fields=["-started_at"])]

    def __str__(self) -> str:
        return f"{self.target} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def stopped_on_budget(self) -> bool:
        return self.status == self.Status.STOPPED_ON_BUDGET

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class TargetLease(models.Model):
    """Who is cleaning a target now. It expires, so a killed run never blocks the next one."""

    target = models.CharField(max_length=100, unique=True)
    claimed_by = models.CharField(max_length=200)
    # A past time means its run stopped without releasing it (a released lease is deleted).
    claimed_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.target} held by {self.claimed_by}"
