"""A source's health, separate from its content: can it be fetched, and was it lately?"""

from datetime import datetime, timedelta

from scraping.fetcher import Outcome
from scraping.models import Source

# This many failed fetches in a row make a source failing; one failure may be a passing hiccup.
FAILING_AFTER = 3
# A source not fetched successfully for this many of its periods (and at least STALE_AT_LEAST)
# is stale: its schedule is not running, or every try is deferred.
STALE_PERIODS = 3
STALE_AT_LEAST = timedelta(minutes=15)
BLOCKING = {Outcome.REFUSED, Outcome.DISALLOWED}


def source_health(source: Source, *, now: datetime) -> tuple[str, str]:
    """(Source.Health, why) for `source` as it is now."""
    if source.last_fetch_at is None:
        return Source.Health.NEW, "its schedule has not fetched it yet"
    if source.last_outcome in BLOCKING:
        return Source.Health.BLOCKED, f"{source.last_outcome}: {source.last_detail}"
    if source.failures_in_row >= FAILING_AFTER:
        return Source.Health.FAILING, f"{source.failures_in_row} failed fetches in a row; last: {source.last_detail}"
    if source.last_ok_at is None or now - source.last_ok_at > max(STALE_AT_LEAST, source.period * STALE_PERIODS):
        since = f"since {source.last_ok_at:%Y-%m-%d %H:%M} UTC" if source.last_ok_at else "ever"
        return Source.Health.STALE, f"no successful fetch {since}"
    return Source.Health.OK, f"last fetch: {source.last_outcome.replace('_', ' ')}"
