from datetime import timedelta

from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """One row per worker that ran the heartbeat schedule: proof that beat and it are alive.

    Only beat sends the heartbeat task and only a worker runs it, so a fresh row means both
    work; a stale one means one of them (or Redis between them) stopped.
    """

    # The heartbeat schedule runs every minute; three missed beats is no longer a hiccup.
    STALE_AFTER = timedelta(minutes=3)

    worker = models.CharField(max_length=255, unique=True, help_text="The worker's node name.")
    first_beat_at = models.DateTimeField()
    last_beat_at = models.DateTimeField(db_index=True)
    beats = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-last_beat_at"]

    def __str__(self) -> str:
        return self.worker

    def is_stale(self, *, now=None) -> bool:
        return (now or timezone.now()) - self.last_beat_at > self.STALE_AFTER
