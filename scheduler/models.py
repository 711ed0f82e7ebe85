from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class Heartbeat(models.Model):
    """A process's proof of life: when it last beat, and whether that is too long ago."""

    STALE_AFTER: timedelta

    last_beat_at = models.DateTimeField(db_index=True)

    class Meta:
        abstract = True
        ordering = ["-last_beat_at"]

    def is_stale(self, *, now=None) -> bool:
        return (now or timezone.now()) - self.last_beat_at > self.STALE_AFTER

    @classmethod
    def fresh(cls, *, now) -> models.QuerySet:
        """The rows of processes alive at `now`: the query twin of is_stale()."""
        return cls.objects.filter(last_beat_at__gte=now - cls.STALE_AFTER)


class WorkerHeartbeat(Heartbeat):
    """One row per worker that ran the heartbeat schedule: proof that beat and it are alive.

    Only beat sends the heartbeat task and only a worker runs it, so a fresh row means both
    work; a stale one means one of them (or Redis between them) stopped.
    """

    # Each worker records itself every third of this (scheduler.worker_liveness), and the
    # heartbeat schedule every minute: three missed records are no longer a hiccup.
    STALE_AFTER = timedelta(seconds=settings.WORKER_STALE_SECONDS)

    worker = models.CharField(max_length=255, unique=True, help_text="The worker's node name.")
    first_beat_at = models.DateTimeField()
    beats = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return self.worker


class BeatHeartbeat(Heartbeat):
    """When each beat process last ran its loop: if beat stops, nothing scheduled is sent.

    Beat loops at least every 5 seconds and records every 15, so a minute of silence means it
    stopped, hangs, or cannot reach the database.
    """

    STALE_AFTER = timedelta(seconds=settings.BEAT_STALE_SECONDS)

    node = models.CharField(max_length=255, unique=True, help_text="host:pid of the beat process.")
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.node


class SchedulePolicy(models.Model):
    """What to do with one schedule's missed and overlapping runs; edited inline in the admin.

    A schedule without a row follows the defaults below.
    """

    class MissedRuns(models.TextChoices):
        SKIP = "skip", "Skip missed runs"
        ONCE = "once", "Run once for all missed runs"
        EACH = "each", "Run each missed run, up to the catch-up limit"

    class Overlap(models.TextChoices):
        ALLOW = "allow", "Allow: start even if the previous run is still running"
        SKIP = "skip", "Skip while the previous run is still running"

    task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.CASCADE, primary_key=True, related_name="scheduler_policy"
    )
    missed_runs = models.CharField(
        max_length=8, choices=MissedRuns.choices, default=MissedRuns.ONCE,
        help_text="After downtime: runs whose slot is older than the starting deadline count as missed.",
    )
    catch_up_limit = models.PositiveIntegerField(
        default=3, help_text="With 'run each': the most missed runs sent; older ones are recorded as missed.",
    )
    starting_deadline_seconds = models.PositiveIntegerField(
        default=60,
        help_text="A run not sent within this many seconds of its slot counts as missed.",
    )
    overlap = models.CharField(max_length=8, choices=Overlap.choices, default=Overlap.ALLOW)
    # Health (scheduler.health): empty means a default derived from the schedule's period.
    start_grace_seconds = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Late once a run has not started this long after its slot; down after twice this. "
                  "Default: half its period, between 30 s and 15 min.",
    )
    max_run_seconds = models.PositiveIntegerField(
        "maximum run time (seconds)", null=True, blank=True,
        help_text="Down when a run is still running after this long. Default: its period, at least a minute, "
                  "at most the task time limit.",
    )
    failures_to_fail = models.PositiveIntegerField(
        "failures before failing", null=True, blank=True,
        help_text="Failing after this many failed runs in a row. Default: 1 for jobs twice a day or rarer, else 3.",
    )
    successes_to_recover = models.PositiveIntegerField(
        "successes to recover", null=True, blank=True,
        help_text="Back up after this many successful runs in a row. Default: 1.",
    )

    class Meta:
        verbose_name_plural = "schedule policies"

    def __str__(self) -> str:
        return f"policy of {self.task_id}"

    @property
    def starting_deadline(self) -> timedelta:
        return timedelta(seconds=self.starting_deadline_seconds)


class ScheduleHealth(models.Model):
    """A schedule's health as the evaluator last saw it (scheduler.health). Changed only by a
    conditional UPDATE from the state read, so of two evaluators at once one records the change."""

    task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.CASCADE, primary_key=True, related_name="health"
    )
    state = models.CharField(max_length=10, default="new")
    cause = models.CharField(max_length=12, blank=True)
    why = models.TextField(blank=True)
    slot = models.DateTimeField(null=True, blank=True, help_text="The slot the state is about.")
    # No database constraint: the retention engine removes old runs with a raw DELETE.
    run = models.ForeignKey("ScheduleRun", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                            related_name="+")
    since = models.DateTimeField(help_text="When the schedule entered this state.")
    evaluated_at = models.DateTimeField()
    # When its people were last told about this state (the flip, or a reminder since).
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "schedule health"
        indexes = [models.Index(fields=["state"], name="scheduler_health_state")]

    def __str__(self) -> str:
        return f"{self.task_id}: {self.state}"


class ScheduleState(models.Model):
    """Beat's bookkeeping for one schedule: when it is next due, and from which definition.

    Beat finds due schedules with an indexed query on `next_due_at` instead of walking every
    schedule each tick. `fingerprint` is the definition the due time was computed from; when
    the row no longer matches it, the due time is computed again.
    """

    task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.CASCADE, primary_key=True, related_name="scheduler_state"
    )
    next_due_at = models.DateTimeField(null=True, db_index=True)
    fingerprint = models.CharField(max_length=64)
    # Why the schedule has no next run although it is enabled (a bad crontab, expired...).
    problem = models.TextField(blank=True)
    synced_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"state of {self.task_id}"


class ScheduleChanges(models.Model):
    """One row, bumped by database triggers whenever a schedule or its timing changes.

    Triggers see every write, `QuerySet.update` and raw SQL included, which Django signals
    do not; beat reads this one number every second and resynchronises when it moved.
    """

    version = models.BigIntegerField(default=0)


class ScheduleRun(models.Model):
    """The run ledger: one row per (schedule, slot), unique in the database.

    Beat claims a slot by inserting its row before publishing, so two beats, or one restarted,
    can never send the same slot twice; the worker moves the row through its outcome.
    """

    class Kind(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        CATCH_UP = "catch_up", "Catch-up"
        MANUAL = "manual", "Manual"

    class Status(models.TextChoices):
        CLAIMED = "claimed", "Claimed"
        SENT = "sent", "Sent"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        MISSED = "missed", "Missed"
        NOT_ENQUEUED = "not_enqueued", "Not enqueued"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.MISSED, Status.NOT_ENQUEUED)

    schedule = models.ForeignKey(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    # Kept with the row so history survives the schedule's deletion or renaming.
    schedule_name = models.CharField(max_length=200)
    task_name = models.CharField(max_length=200)
    scheduled_for = models.DateTimeField(help_text="The slot this run is for; a job's 'day it is for' comes from it.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SCHEDULED)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CLAIMED)
    reason = models.TextField(blank=True, help_text="Why the run was skipped, missed or not enqueued.")
    task_id = models.CharField(max_length=36, unique=True, help_text="The Celery task id; links to the task result.")
    claimed_by = models.CharField(max_length=255, blank=True)
    claimed_at = models.DateTimeField()
    # While claimed: until when beat's claim holds (scheduler.claim.BEAT_CLAIM); a claimed run
    # past it was stranded by a beat that stopped before publishing, and any beat may take it.
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    # While running: the worker renews this; once it lapses (a killed worker) the run no
    # longer counts as running for the overlap policy, and a redelivery may take it over.
    lease_until = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    output = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["schedule", "scheduled_for"], name="scheduler_run_one_per_slot"),
        ]
        indexes = [
            models.Index(fields=["-scheduled_for"], name="scheduler_run_newest"),
            models.Index(fields=["status", "scheduled_for"], name="scheduler_run_status"),
            models.Index(fields=["schedule", "status"], name="scheduler_run_schedule_status"),
            models.Index(fields=["schedule_name", "-scheduled_for"], name="scheduler_run_name_newest"),
            # The kind filter's rare choices (manual, catch-up), a small share of the runs: only
            # those rows are indexed, so beat's inserts of scheduled runs never touch it.
            models.Index(fields=["kind", "-scheduled_for"], name="scheduler_run_unscheduled",
                         condition=~models.Q(kind="scheduled")),
        ]
        ordering = ["-scheduled_for", "-id"]

    def __str__(self) -> str:
        return f"{self.schedule_name} @ {self.scheduled_for:%Y-%m-%d %H:%M:%S}"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
