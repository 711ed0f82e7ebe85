"""An expiring lease per target: two cleanup runs never work on the same target at once.

Claims are a conditional UPDATE (take over an expired lease) or an INSERT guarded by the
unique target, with the row count checked, so two processes can never both win.
"""

import os
import socket
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from cleanup.models import TargetLease

# Renewed at each progress checkpoint (every few seconds, services.CHECKPOINT_SECONDS); a run
# killed mid-way frees its target after this long.
LEASE_DURATION = timedelta(seconds=60)


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_claim(*, target: str, holder: str) -> bool:
    now = timezone.now()
    taken_over = TargetLease.objects.filter(target=target, expires_at__lt=now).update(
        holder=holder, expires_at=now + LEASE_DURATION
    )
    if taken_over:
        return True
    try:
        with transaction.atomic():
            TargetLease.objects.create(target=target, holder=holder, expires_at=now + LEASE_DURATION)
    except IntegrityError:
        return False
    return True


def lease_renew(*, target: str, holder: str) -> bool:
    """Extend our lease; False means it expired and someone else took the target."""
    return bool(TargetLease.objects.filter(target=target, holder=holder).update(
        expires_at=timezone.now() + LEASE_DURATION
    ))


def lease_release(*, target: str, holder: str) -> None:
    TargetLease.objects.filter(target=target, holder=holder).delete()


def lease_holder(*, target: str) -> TargetLease | None:
    return TargetLease.objects.filter(target=target).first()
