"""What scraping declares (shared.declarations): the retention of snapshots and fetch records,
and the disabled example source. A source owns its schedule, so none is declared here."""

from django.db.models import Q

from scraping.sources import sources_seed
from shared.declarations import RetentionTarget, Seed


def snapshots_kept() -> Q:
    """Snapshots never removed by age: a source's baseline, one waiting for review (either side of
    a pending change), and rejected content (so it is not raised again)."""
    from scraping.models import Change, Source

    return (Q(pk__in=Source.objects.filter(baseline__isnull=False).values("baseline"))
            | Q(pk__in=Change.objects.filter(status=Change.Status.PENDING).values("after"))
            | Q(pk__in=Change.objects.filter(status=Change.Status.PENDING, before__isnull=False).values("before"))
            | Q(pk__in=Change.objects.filter(status=Change.Status.REJECTED).values("after")))


RETENTION_TARGETS = [
    RetentionTarget(
        key="scraping_snapshots",
        model="scraping.Snapshot",
        description="Contents of sources by when they were last seen; baselines, contents waiting for review "
                    "and rejected ones are never removed.",
        age_field="last_seen_at",
        group_field="source",
        default_max_age_days=90,
        default_keep_last=10,
        kept=snapshots_kept,
    ),
    RetentionTarget(
        key="scraping_fetches",
        model="scraping.FetchRecord",
        description="Each fetch of a source with its outcome; the newest few per source are kept.",
        age_field="fetched_at",
        group_field="source",
        default_max_age_days=30,
        default_keep_last=50,
    ),
]

SEEDS = [Seed(what="Scraping source", ensure=sources_seed)]
