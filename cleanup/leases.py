"""An expiring claim per target: two cleanup runs never work on the same target at once.

One TargetLease row per target while it is held, claimed through shared.claims: a conditional UPDATE of a free
or lapsed row, or an INSERT guarded by the unique target, with the row count checked, so two
processes can never both win.
"""

from datetime import timedelta

from django.utils import timezone

from cleanup.models import TargetLease
from shared.claims import Claim

# The engine renews the claim at each progress checkpoint (after the batch that crosses
# CHECKPOINT_SECONDS); a run killed mid-way frees its target once the claim lapses.
CHECKPOINT_SECONDS = 2.0
TARGET_CLAIM = Claim(holder_field="claimed_by", until_field="claimed_until", lasts=timedelta(seconds=60),
                     renew_every=timedelta(seconds=CHECKPOINT_SECONDS))


def _lease(target: str):
    return TargetLease.objects.filter(target=target)


def lease_claim(*, target: str, holder: str) -> bool:
    return TARGET_CLAIM.take_row(TargetLease, key={"target": target}, holder=holder, now=timezone.now())


def lease_renew(*, target: str, holder: str) -> bool:
    """Extend our lease; False means it lapsed and someone else took the target."""
    return TARGET_CLAIM.renew(_lease(target), holder=holder, now=timezone.now())


def lease_release(*, target: str, holder: str) -> None:
    # Deleted rather than emptied: a row exists only while someone holds the target.
    _lease(target).filter(TARGET_CLAIM.held_by(holder)).delete()


def lease_holder(*, target: str) -> TargetLease | None:
    """The live lease on `target`, if any."""
    return _lease(target).filter(TARGET_CLAIM.live(timezone.now())).first()
