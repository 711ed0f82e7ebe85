"""One fetch of a source, start to end: its claim, the gate, robots.txt, the host's turn and
in-flight place, the fetch, the extract, the snapshot and change, and the record of it all.

A request that may not go yet raises Deferred with how long to wait; the caller (the Celery
task) sends itself again for then, so no worker sleeps. Everything else ends in a SourceFetched,
whose `output` is what the run ledger shows.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from scraping import outbound, robots
from scraping.changes import change_consider, snapshot_seen
from scraping.extract import ExtractError
from scraping.fetcher import TOTAL_SECONDS, Fetch, Outcome, refused_detail
from scraping.gate import Refused, url_target
from scraping.models import SOURCE_CLAIM, FetchRecord, Source
from shared.claims import holder_name

# Outcomes past the fetcher's own: a page fetched whose extract could not be made, or was empty.
EXTRACT_FAILED = "extract_failed"
EMPTY = "empty"
RATE_LIMITED = "rate_limited"
# Worth another try soon: what a server or the network does for now. A refusal, robots.txt's
# verdict, a page too large or a broken extraction is the same next time.
RETRYABLE = {Outcome.TIMED_OUT, Outcome.UNREACHABLE, RATE_LIMITED}
SUCCEEDED = {Outcome.FETCHED, Outcome.NOT_MODIFIED}
RATE_LIMIT_STATUSES = {429, 503}


class Deferred(Exception):
    """This fetch may not go yet (the host's turn, its in-flight cap, its Retry-After)."""

    def __init__(self, seconds: float, why: str, *, slot_ms: int = 0) -> None:
        super().__init__(f"{why}; again in {seconds:.1f} s")
        # The host's slot reserved for this fetch's next request: it comes back with it.
        self.seconds, self.why, self.slot_ms = seconds, why, slot_ms


@dataclass
class SourceFetched:
    source: Source
    outcome: str
    detail: str = ""
    fetch: Fetch | None = None
    record: FetchRecord | None = None
    retry_after_seconds: float | None = None
    extras: dict = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.outcome in SUCCEEDED

    @property
    def retryable(self) -> bool:
        return self.outcome in RETRYABLE

    @property
    def output(self) -> dict:
        output = {"source": self.source.name, "outcome": str(self.outcome), "detail": self.detail}
        if self.fetch is not None:
            output.update({key: value for key, value in self.fetch.as_output().items()
                           if key not in ("outcome", "detail")})
        return {**output, **self.extras}


def source_fetch(*, source: Source, run_id: int | None = None, slot_ms: int = 0) -> SourceFetched:
    """Fetch `source` once now, or raise Deferred. Two fetches of one source never run at once:
    the second is told so and stores nothing. `slot_ms`: the host's slot an earlier try was given.

    What a deferred try does is kept to Redis (the gate, robots.txt from its cache, the host's
    turn): the source's claim and its row are read only once the page's turn has come.
    """
    started = time.monotonic()
    try:
        host = url_target(source.url, ports=source.ports, allowed=settings.OUTBOUND_ALLOWED_NETWORKS).host
    except Refused as refused:
        return _record(source, run_id, started, Fetch(url=source.url, outcome=Outcome.REFUSED,
                                                      detail=refused_detail(source.url, refused)))
    limits, holder = outbound.host_limits(), holder_name()
    reserved = [slot_ms]  # used by the first request asking for a turn, then spent

    def take_turn(interval: float) -> None:
        # Built before the turn: making a process's first client (its TLS context) takes up to
        # half a second, which would send the request that late after its slot.
        outbound.client()
        turn = limits.turn(host, interval_seconds=interval, slot_ms=reserved.pop() if reserved else 0)
        if not turn.go:
            raise Deferred(turn.wait_seconds, f"{host}'s next free slot is {turn.wait_seconds:.1f} s away "
                           f"(one request every {interval:g} s)", slot_ms=turn.slot_ms)

    def in_flight_get(url: str, *, interval: float, **options) -> Fetch:
        place = limits.enter(host, holder=holder, cap=settings.SCRAPER_HOST_CONCURRENCY,
                             hold_seconds=TOTAL_SECONDS + 5)
        if not place.go:
            # The cap frees as soon as a request ends: look again soon, not when the oldest
            # holder's place would expire.
            raise Deferred(min(place.wait_seconds, max(interval, 1.0)),
                           f"{settings.SCRAPER_HOST_CONCURRENCY} requests to {host} in flight")
        try:
            return outbound.get(url, ports=source.ports, robots_cache=outbound.shared_redis(), **options)
        finally:
            limits.leave(host, holder=holder)

    def robots_get(where: str) -> Fetch:
        interval = source.host_interval_seconds()
        take_turn(interval)
        return in_flight_get(where, interval=interval, max_bytes=robots.MAX_BYTES, of_robots=True)

    verdict = outbound.robots_verdict(source.url, cache=outbound.shared_redis(), fetch_robots=robots_get)
    if not verdict.allowed:
        return _record(source, run_id, started, Fetch(url=source.url, outcome=Outcome.DISALLOWED,
                                                      detail=verdict.detail))
    interval = source.host_interval_seconds(verdict.crawl_delay_seconds)
    take_turn(interval)
    if not SOURCE_CLAIM.take(Source.objects.filter(pk=source.pk), holder=holder, now=timezone.now(),
                             free=SOURCE_CLAIM.unheld()):
        source.refresh_from_db(fields=["claimed_by", "claimed_until"])
        return SourceFetched(source, "skipped", f"another fetch of this source is running ({source.claimed_by})")
    try:
        source.refresh_from_db()
        result = in_flight_get(source.url, interval=interval, etag=source.etag, last_modified=source.last_modified)
        if result.status in RATE_LIMIT_STATUSES and result.retry_after_seconds:
            # Every worker waits for this host now, not only this source's next try.
            limits.pause(host, seconds=result.retry_after_seconds)
        return _record(source, run_id, started, result)
    finally:
        SOURCE_CLAIM.release(Source.objects.filter(pk=source.pk), holder=holder)


def _record(source: Source, run_id: int | None, started: float, result: Fetch) -> SourceFetched:
    now = timezone.now()
    fetched = SourceFetched(source, result.outcome, result.detail, fetch=result,
                            retry_after_seconds=result.retry_after_seconds)
    if result.status in RATE_LIMIT_STATUSES:
        fetched.outcome = RATE_LIMITED
    snapshot = change = None
    if result.outcome == Outcome.FETCHED:
        try:
            text = source.extractor.extract(result.body)
        except ExtractError as error:
            fetched.outcome, fetched.detail = EXTRACT_FAILED, str(error)
        else:
            if not text:
                fetched.outcome, fetched.detail = EMPTY, f"the {source.extract} extract is empty: never a change"
            else:
                snapshot, stored = snapshot_seen(source=source, text=text, now=now)
                change = change_consider(source=source, snapshot=snapshot, previous_hash=source.last_hash, now=now,
                                         run_id=run_id)
                fetched.extras = {"snapshot": "new" if stored else "seen before", "characters": len(text),
                                  "change": change.pk if change else None}
    record = FetchRecord.objects.create(
        source=source, run_id=run_id, fetched_at=now, outcome=fetched.outcome, status=result.status,
        detail=fetched.detail, final_url=result.final_url[:2000], bytes=len(result.body),
        duration_ms=round((time.monotonic() - started) * 1000), snapshot=snapshot, change=change,
    )
    fetched.record = record
    _health_note(source, fetched, now, snapshot)
    return fetched


def _health_note(source: Source, fetched: SourceFetched, now: datetime, snapshot) -> None:
    changes = {"last_fetch_at": now, "last_outcome": fetched.outcome, "last_detail": fetched.detail[:2000]}
    if fetched.succeeded:
        changes.update(last_ok_at=now, failures_in_row=0)
    else:
        changes["failures_in_row"] = F("failures_in_row") + 1
    if snapshot is not None:
        # Validators only from an answer whose content was read and kept: after a failed or
        # empty extract the next fetch must get the whole page again, not a 304.
        changes.update(etag=fetched.fetch.etag[:500], last_modified=fetched.fetch.last_modified[:100],
                       last_hash=snapshot.content_hash)
    Source.objects.filter(pk=source.pk).update(**changes)
