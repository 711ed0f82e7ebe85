"""`manage.py cleanup` killed with SIGKILL between batches: nothing live is lost, the next run finishes."""

import signal
import sys
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from cleanup.models import CleanupRun, RetentionPolicy, TargetLease
from cleanup.services import retention_policies_seed
from tests.cleanup import factories
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_cleanup_killed_mid_way_keeps_live_sessions_and_the_next_run_completes(start_process, app_env):
    expired = factories.sessions(60_000, expires_in=-timedelta(minutes=1))
    live = set(factories.sessions(500, expires_in=timedelta(days=1)))
    retention_policies_seed()
    RetentionPolicy.objects.filter(target="sessions").update(batch_size=100)

    cleanup = start_process("cleanup-1", [sys.executable, "manage.py", "cleanup", "sessions"], **app_env)
    wait_until(lambda: Session.objects.count() < len(expired) + len(live), timeout=60,
               what="the cleanup to delete something", every=0.01)
    cleanup.signal_group(signal.SIGKILL)
    cleanup.process.wait(timeout=10)

    killed = CleanupRun.objects.get()
    assert killed.status == "running"
    assert 0 < Session.objects.count() - len(live) < len(expired), "the kill came too late to test anything"
    assert live <= set(Session.objects.values_list("session_key", flat=True))

    # A minute later the killed run's lease has expired; simulate that minute.
    TargetLease.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    again = start_process("cleanup-2", [sys.executable, "manage.py", "cleanup", "sessions"], **app_env)
    assert again.process.wait(timeout=120) == 0, again.output()

    assert set(Session.objects.values_list("session_key", flat=True)) == live
    killed.refresh_from_db()
    assert killed.status == "failed" and killed.error.startswith("interrupted")
    assert CleanupRun.objects.exclude(pk=killed.pk).get().status == "succeeded"
