"""Old flips go through the one retention engine with their deliveries (a cascade in the database)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cleanup.models import CleanupRun
from cleanup.services import retention_policy_for, target_purge
from cleanup.targets import retention_targets
from monitoring.models import AlertDelivery, Flip

pytestmark = pytest.mark.django_db


def test_old_flips_are_removed_with_their_deliveries():
    now = timezone.now()
    for age in (400, 1):
        flip = Flip.objects.create(subject="beat", from_state="up", to_state="down", why="",
                                   at=now - timedelta(days=age))
        AlertDelivery.objects.create(flip=flip, channel="email", recipient="ops@example.com", next_attempt_at=now)
    target = retention_targets()["alert_flips"]
    run = target_purge(target=target, policy=retention_policy_for(target=target), dry_run=False,
                       trigger=CleanupRun.Trigger.COMMAND)
    assert (run.status, run.rows_deleted) == ("succeeded", 1), run.error
    assert AlertDelivery.objects.get().flip == Flip.objects.get()
