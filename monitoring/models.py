from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from scheduler.health import Cause, State
from scheduler.models import Heartbeat
from shared.addresses import email_list, validate_email_list
from shared.claims import Claim


class AlertSettings(models.Model):
    """Who hears about one schedule, and how often while it stays bad; a schedule without a row
    alerts the default recipients (ALERT_EMAILS, ALERT_WEBHOOK_URL)."""

    task = models.OneToOneField("django_celery_beat.PeriodicTask", on_delete=models.CASCADE, primary_key=True,
                                related_name="alert_settings")
    emails = models.TextField(
        blank=True, validators=[validate_email_list],
        help_text="Addresses alerted when this schedule's health changes, one per line or comma-separated. "
                  "Empty: the default list (ALERT_EMAILS).",
    )
    webhook_url = models.CharField(
        "webhook URL", max_length=2000, blank=True,
        help_text="Receives each alert as a JSON POST, through the same gate as every outbound request. "
                  "Empty: the default (ALERT_WEBHOOK_URL).",
    )
    remind_every_minutes = models.PositiveIntegerField(
        default=24 * 60, validators=[MinValueValidator(5), MaxValueValidator(30 * 24 * 60)],
        help_text="While it stays down or failing, a reminder this often.",
    )
    muted_until = models.DateTimeField(null=True, blank=True, help_text="No alert is sent until then.")
    mute_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "alert settings"

    def __str__(self) -> str:
        return f"alerts of {self.task_id}"

    @property
    def email_list(self) -> list[str]:
        return email_list(self.emails)

    @property
    def remind_every(self) -> timedelta:
        return timedelta(minutes=self.remind_every_minutes)

    def clean(self) -> None:
        from scraping.gate import Refused, url_target

        errors = {}
        if self.webhook_url:
            try:
                url_target(self.webhook_url, ports=settings.WEBHOOK_ALLOWED_PORTS,
                           allowed=settings.OUTBOUND_ALLOWED_NETWORKS)
            except Refused as refused:
                errors["webhook_url"] = f"Refused by the gate: {refused.rule}."
        if self.muted_until and not self.mute_reason.strip():
            errors["mute_reason"] = "Say why the schedule is muted: the others on call will read it."
        if self.mute_reason.strip() and not self.muted_until:
            errors["muted_until"] = "A mute needs an end: choose when alerts start again."
        if errors:
            raise ValidationError(errors)


class SystemHealth(models.Model):
    """The health of what every schedule needs: beat, and the workers (one row each)."""

    class Part(models.TextChoices):
        BEAT = "beat", "Beat"
        WORKERS = "workers", "Workers"

    part = models.CharField(max_length=10, choices=Part.choices, primary_key=True)
    state = models.CharField(max_length=10, choices=[(State.UP, "Up"), (State.DOWN, "Down")])
    why = models.TextField(blank=True)
    since = models.DateTimeField()

    class Meta:
        verbose_name_plural = "system health"

    def __str__(self) -> str:
        return f"{self.part}: {self.state}"


class Flip(models.Model):
    """One change of health (or a reminder that it stays bad): what alerts are made of."""

    class Subject(models.TextChoices):
        SCHEDULE = "schedule", "A schedule"
        BEAT = "beat", "Beat"
        WORKERS = "workers", "Workers"

    subject = models.CharField(max_length=10, choices=Subject.choices, default=Subject.SCHEDULE)
    schedule = models.ForeignKey("django_celery_beat.PeriodicTask", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="flips")
    # Kept with the row, so an alert still names a schedule deleted since.
    schedule_name = models.CharField(max_length=200, blank=True)
    from_state = models.CharField(max_length=10, choices=State.CHOICES)
    to_state = models.CharField(max_length=10, choices=State.CHOICES)
    cause = models.CharField(max_length=12, blank=True, choices=Cause.CHOICES)
    why = models.TextField()
    slot = models.DateTimeField(null=True, blank=True)
    # No database constraint: the retention engine removes old runs with a raw DELETE.
    run = models.ForeignKey("scheduler.ScheduleRun", null=True, blank=True, on_delete=models.DO_NOTHING,
                            db_constraint=False, related_name="+")
    at = models.DateTimeField(db_index=True)
    reminder = models.BooleanField(default=False, help_text="Sent again because the state lasted.")
    # Why nobody is told (muted, covered by a "beat down" or "no workers" alert, not worth an
    # alert such as new → up); empty when its alerts are delivered.
    silenced = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["schedule", "-at"], name="monitoring_flip_schedule")]

    def __str__(self) -> str:
        return f"{self.title}"

    @property
    def title(self) -> str:
        name = {"beat": "Beat", "workers": "Workers"}.get(self.subject, self.schedule_name)
        if self.reminder:
            return f"{name} is still {self.to_state}"
        return f"{name}: {self.from_state} → {self.to_state}"

    @property
    def is_bad(self) -> bool:
        return self.to_state in (State.LATE, State.DOWN, State.FAILING)


# A delivery's claim while it is being sent by one evaluator; never renewed: one try is one SMTP
# exchange or one POST, each bounded well below this.
DELIVERY_CLAIM = Claim(holder_field="claimed_by", until_field="claimed_until", lasts=timedelta(minutes=2))


class AlertDelivery(models.Model):
    """One recipient's copy of one flip on one channel: delivered once, its outcome kept."""

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        PRINTED = "printed", "Printed to the log (EMAIL_HOST is not set)"
        FAILED = "failed", "Failed"

    flip = models.ForeignKey(Flip, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipient = models.CharField(max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    claimed_by = models.CharField(max_length=255, null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "alert deliveries"
        constraints = [models.UniqueConstraint(fields=["flip", "channel", "recipient"],
                                               name="monitoring_delivery_once")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.recipient}: {self.get_status_display()}"


class EvaluatorHeartbeat(Heartbeat):
    """When each evaluator process last finished a pass: if it stops, nobody is alerted."""

    STALE_AFTER = timedelta(minutes=1)

    node = models.CharField(max_length=255, unique=True, help_text="host:pid of the evaluator process.")
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.node


class LedgerHour(models.Model):
    """One settled hour of the run ledger, summarised for the dashboard: its dispatch lag and
    queue wait percentiles, which cost a sort of every run of the hour to compute.

    An hour is settled once it ended an hour ago and none of its runs is still claimed, sent or
    running: its runs' times no longer change. `runs` is how many runs the hour had when it was
    summarised; if the ledger holds another number now (beat recorded missed slots after an
    outage, cleanup removed some), the summary is made again.
    """

    hour = models.DateTimeField(unique=True, help_text="The hour's start (UTC).")
    runs = models.PositiveIntegerField(help_text="The hour's runs when it was summarised.")
    lag_runs = models.PositiveIntegerField(default=0)
    lag_p50 = models.FloatField(null=True)
    lag_p95 = models.FloatField(null=True)
    wait_runs = models.PositiveIntegerField(default=0)
    wait_p50 = models.FloatField(null=True)
    wait_p95 = models.FloatField(null=True)
    made_at = models.DateTimeField()

    class Meta:
        ordering = ["hour"]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} UTC: {self.runs} runs"
