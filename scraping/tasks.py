"""Scraping's Celery entry point: fetch a source for its slot.

The ledger's worker side (scheduler.worker.RecordedTask) records the run; this decides what
becomes of a fetch that may not go yet (deferred: sent again for its place in the host's queue)
and of one that failed for now (tried again after a backoff), both through Celery, so no worker
sleeps waiting. Only `scrape --source`, where a person waits in the foreground, sleeps instead.
"""

import logging
import time

from celery import shared_task

from scheduler.publish import BROKER_ERRORS
from scheduler.worker import JobFailed, Skipped, run_id_of, run_note
from scraping.models import Source
from scraping.source_fetch import Deferred, SourceFetched, source_fetch
from scraping.sources import source_schedules_orphaned_delete
from shared.backoff import backoff_seconds

logger = logging.getLogger(__name__)

# A run waits for its host at most this often and this long in all: past that the host is too
# busy for this source's period, and the run says so instead of queueing without end. Each
# wait is well under the broker's visibility timeout (a message held longer is delivered twice).
MAX_DEFERRALS = 20
MAX_DEFER_SECONDS = 15 * 60
# Tries after a failure that may pass (timed out, unreachable, 429/503), the first one included.
ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 10 * 60.0


# JobFailed is an outcome the run's output names (refused, HTTP error...): the worker logs it in
# one line, not with a traceback (Celery's `throws`).
@shared_task(bind=True, max_retries=None, throws=(JobFailed,))
def scrape_source(self, source_id: int, deferrals: int = 0, waited: float = 0.0, attempt: int = 1,
                  foreground: bool = False, slot: int = 0) -> dict:
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        removed = source_schedules_orphaned_delete(source_id=source_id)
        logger.warning("scrape_source skipped: source %s was deleted; %d schedule(s) of it removed", source_id, removed)
        return Skipped(f"source {source_id} was deleted")
    if not source.enabled and not foreground:
        return Skipped(f"source {source.name!r} is disabled")
    run_id = run_id_of(self.request)
    try:
        fetched = source_fetch(source=source, run_id=run_id, slot_ms=slot)
    except Deferred as deferred:
        if deferrals >= MAX_DEFERRALS or waited + deferred.seconds > MAX_DEFER_SECONDS:
            raise JobFailed(f"rate_limited: deferred {deferrals} times ({waited:.0f} s) and still {deferred.why}",
                            output={"source": source.name, "outcome": "rate_limited", "deferred": deferrals,
                                    "waited_seconds": round(waited, 1), "detail": deferred.why}) from None
        later = {"deferrals": deferrals + 1, "waited": waited + deferred.seconds, "attempt": attempt,
                 "slot": deferred.slot_ms}
        if foreground:
            time.sleep(deferred.seconds)
            return scrape_source.run(source_id, foreground=True, **later)
        if run_id is not None:
            run_note(run_id=run_id, output={"source": source.name, "outcome": "deferred", "deferred": deferrals + 1,
                                            "detail": str(deferred)})
        _again(self, source_id, countdown=deferred.seconds, why=str(deferred), **later)
    output = {**fetched.output, "deferred": deferrals, "waited_seconds": round(waited, 1), "attempt": attempt}
    if fetched.retryable and attempt < ATTEMPTS and not foreground:
        wait = max(fetched.retry_after_seconds or 0, backoff_seconds(attempt, base=BACKOFF_BASE_SECONDS,
                                                                     cap=BACKOFF_CAP_SECONDS))
        if wait <= MAX_DEFER_SECONDS:
            if run_id is not None:
                run_note(run_id=run_id, output={**output, "retry_in_seconds": round(wait)})
            _again(self, source_id, countdown=wait, why=f"{fetched.outcome}: {fetched.detail}",
                   deferrals=deferrals, waited=waited, attempt=attempt + 1)
    return _outcome(fetched, output)


def _again(task, source_id: int, *, countdown: float, why: str, **state) -> None:
    try:
        task.run_again_later(countdown=countdown, kwargs={"source_id": source_id, **state})
    except BROKER_ERRORS as error:
        # The next try could not be published (the broker went away): fail the run where it is seen.
        raise JobFailed(f"{why}; the next try could not be scheduled ({error})") from None


def _outcome(fetched: SourceFetched, output: dict) -> dict:
    """The run succeeds when the page was read, and is skipped when another fetch of the source
    was running (that one's run says what the page held); any other outcome fails it, with the
    fetch's output kept."""
    if fetched.succeeded:
        return output
    if fetched.outcome == "skipped":
        skipped = Skipped(fetched.detail)
        skipped.update(output)
        return skipped
    raise JobFailed(f"{fetched.outcome}: {fetched.detail}", output=output)
