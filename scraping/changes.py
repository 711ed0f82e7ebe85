"""Snapshots and changes: what a fetch's extract becomes, and what a reviewer decides.

- An extract is hashed (SHA-256 of the normalised text); a snapshot is stored only for a hash
  the source has not had, otherwise the one stored is seen again.
- The first content a source ever has becomes its baseline: there is nothing to compare it with.
- A change is raised when the extract is not the baseline, unless that content is already
  waiting for review, was rejected, or was ignored and has not gone away since.
- Approve: the new snapshot becomes the baseline. Reject: the baseline stays and the same content
  is never raised again. Ignore: closed without a verdict; raised again if it comes back after
  the page showed something else.
"""

import difflib
import hashlib
from datetime import datetime

from django.db import IntegrityError, transaction

from scraping.models import Change, Snapshot, Source

DIFF_CONTEXT_LINES = 3


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def snapshot_seen(*, source: Source, text: str, now: datetime) -> tuple[Snapshot, bool]:
    """The snapshot holding `text`, stored now if new; True when it was stored now."""
    digest = content_hash(text)
    updated = Snapshot.objects.filter(source=source, content_hash=digest).update(last_seen_at=now)
    if updated:
        return Snapshot.objects.get(source=source, content_hash=digest), False
    try:
        with transaction.atomic():
            return Snapshot.objects.create(source=source, content_hash=digest, text=text, first_seen_at=now,
                                           last_seen_at=now), True
    except IntegrityError:
        # Another fetch of the same source stored it a moment ago.
        return Snapshot.objects.get(source=source, content_hash=digest), False


def unified_diff(before: str, after: str) -> str:
    return "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), "baseline", "new",
                                          n=DIFF_CONTEXT_LINES, lineterm=""))


def change_consider(*, source: Source, snapshot: Snapshot, previous_hash: str, now: datetime,
                    run_id: int | None = None) -> Change | None:
    """Raise a change for `snapshot` when it is news to a reviewer; the first content becomes the
    baseline. `previous_hash`: the content the source's fetch before this one had."""
    if source.baseline_id is None:
        Source.objects.filter(pk=source.pk, baseline__isnull=True).update(baseline=snapshot)
        source.baseline = snapshot
        return None
    if snapshot.pk == source.baseline_id:
        return None
    earlier = Change.objects.filter(source=source, after=snapshot)
    if earlier.filter(status__in=[Change.Status.PENDING, Change.Status.REJECTED]).exists():
        return None
    if previous_hash == snapshot.content_hash and earlier.filter(status=Change.Status.IGNORED).exists():
        return None
    try:
        with transaction.atomic():
            return Change.objects.create(source=source, before=source.baseline, after=snapshot, run_id=run_id,
                                         diff=unified_diff(source.baseline.text, snapshot.text), raised_at=now)
    except IntegrityError:
        return None  # raised a moment ago by another fetch of the same content


class NotPending(Exception):
    pass


def change_review(*, change: Change, decision: str, reviewer: str, now: datetime) -> Change:
    """Approve, reject or ignore a pending change; NotPending when someone decided it already."""
    if decision not in (Change.Status.APPROVED, Change.Status.REJECTED, Change.Status.IGNORED):
        raise ValueError(f"not a decision: {decision!r}")
    with transaction.atomic():
        decided = Change.objects.filter(pk=change.pk, status=Change.Status.PENDING).update(
            status=decision, reviewed_at=now, reviewed_by=reviewer)
        if not decided:
            change.refresh_from_db()
            by = f" by {change.reviewed_by}" if change.reviewed_by else ""
            raise NotPending(f"this change was already {change.status}{by}")
        if decision == Change.Status.APPROVED:
            Source.objects.filter(pk=change.source_id).update(baseline_id=change.after_id)
    change.refresh_from_db()
    return change
