from django.utils import timezone

from scheduler.models import BeatHeartbeat


def beat_liveness() -> dict:
    """What the admin says about beat: the newest beat heartbeat and whether it is stale."""
    latest = BeatHeartbeat.objects.first()
    if latest is None:
        return {"state": "never", "beat": None, "seconds": None}
    seconds = int((timezone.now() - latest.last_beat_at).total_seconds())
    return {"state": "stale" if latest.is_stale() else "alive", "beat": latest, "seconds": seconds}
