from datetime import timedelta

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


class WorkerHeartbeat(Heartbeat):
    """One row per worker that ran the heartbeat schedule: proof that beat and it are alive.

    Only beat sends the heartbeat task and only a worker runs it, so a fresh row means both
    work; a stale one means one of them (or Redis between them) stopped.
    """

    # The heartbeat schedule runs every minute; three missed beats is no longer a hiccup.
    STALE_AFTER = timedelta(minutes=3)

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

    STALE_AFTER = timedelta(minutes=1)

    node = models.CharField(max_length=255, unique=True, help_text="host:pid of the beat process.")
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.node
