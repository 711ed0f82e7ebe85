"""Writing sources: the one way a source is saved or deleted (admin, seeding, shell), so its
schedule is always in step with it (shared.owned_schedules)."""

from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scraping.models import Source
from shared.owned_schedules import (
    orphaned_schedules_delete,
    owned_schedule_delete,
    owned_schedule_sync,
    timing_row,
)

SCRAPE_TASK = "scraping.tasks.scrape_source"
OWNER_KWARG = "source_id"


def source_schedule_name(source: Source) -> str:
    return f"Scrape: {source.name}"


def source_schedule_sync(*, source: Source) -> PeriodicTask:
    interval = timing_row(IntervalSchedule, every=source.every_minutes, period=IntervalSchedule.MINUTES)
    return owned_schedule_sync(
        owner=source, task=SCRAPE_TASK, owner_kwarg=OWNER_KWARG, name=source_schedule_name(source),
        interval=interval, enabled=source.enabled,
        description=(
            f"Fetches the source {source.name!r} (Scraping › Sources). How often is set on the source's "
            "page; changes made here to it are replaced when the source is saved."
        ),
    )


# Fields whose change makes the extract another thing: the old baseline no longer compares.
WHAT_IS_WATCHED = ("url", "extract", "expression", "ignore")


def source_save(*, source: Source) -> Source:
    """Validate and save a source and bring its schedule in step.

    When what is watched changes, the next fetch gets the whole page (the validators are
    dropped) and its content becomes the baseline: a new selector's first extract is not a
    change of the page. Snapshots and changes already stored stay.
    """
    source.full_clean()
    before = Source.objects.filter(pk=source.pk).values(*WHAT_IS_WATCHED).first() if source.pk else None
    if before is not None and any(before[name] != getattr(source, name) for name in WHAT_IS_WATCHED):
        source.baseline, source.etag, source.last_modified, source.last_hash = None, "", "", ""
    with transaction.atomic():
        source.save()
        source_schedule_sync(source=source)
    return source


def source_delete(*, source: Source) -> None:
    """Delete a source, its snapshots, changes and fetch records, and its schedule; its runs stay
    in the ledger."""
    with transaction.atomic():
        owned_schedule_delete(owner=source)


def source_schedules_orphaned_delete(*, source_id: int) -> int:
    return orphaned_schedules_delete(task=SCRAPE_TASK, owner_kwarg=OWNER_KWARG, owner_id=source_id)


EXAMPLE = "Example: a page to watch"


def sources_seed() -> list[tuple[str, bool]]:
    """A disabled example source, so the admin shows what one looks like; an existing one stays as
    edited."""
    source = Source.objects.filter(name=EXAMPLE).first()
    if source is not None:
        if source.schedule_id is None:
            source_schedule_sync(source=source)
        return [(EXAMPLE, False)]
    source_save(source=Source(
        name=EXAMPLE, url="https://example.com/", extract="css", expression="h1", every_minutes=60, enabled=False,
        description=(
            "Disabled until you configure it: set the URL of a page you want to watch, what to compare "
            "(its readable text, a CSS selector, an XPath or a JSONPath) and lines to ignore, press "
            "Test fetch to see the extract, then enable it. Changes wait under Scraping › Changes."
        ),
    ))
    return [(EXAMPLE, True)]
