"""One claims module for every kind of work: take, renew, release, and lapsed claims taken over."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cleanup.leases import CHECKPOINT_SECONDS, TARGET_CLAIM
from cleanup.models import TargetLease
from reports.delivery import DELIVERY_CLAIM, SMTP_TIMEOUT_SECONDS
from scheduler.beat import CLAIM_AHEAD
from scheduler.claim import BEAT_CLAIM
from scheduler.models import ScheduleRun
from scheduler.worker import RUN_LEASE
from shared.claims import Claim, holder_name
from tests.builders import ledger_run

pytestmark = pytest.mark.django_db

CLAIM = Claim(holder_field="claimed_by", until_field="claimed_until", lasts=timedelta(seconds=60))


def lease(**fields) -> TargetLease:
    return TargetLease.objects.create(target="sessions", **{"claimed_by": "", **fields})


def test_of_two_holders_taking_a_free_row_only_the_first_wins():
    now = timezone.now()
    lease(claimed_until=now - timedelta(seconds=1))
    rows = TargetLease.objects.filter(target="sessions")
    assert CLAIM.take(rows, holder="a", now=now) == 1
    assert CLAIM.take(rows, holder="b", now=now) == 0
    assert TargetLease.objects.get().claimed_by == "a"


def test_a_lapsed_claim_is_taken_over_and_its_old_holder_can_no_longer_renew_it():
    now = timezone.now()
    lease(claimed_by="killed", claimed_until=now + timedelta(seconds=5))
    rows = TargetLease.objects.filter(target="sessions")
    later = now + timedelta(seconds=6)

    assert CLAIM.take(rows, holder="next", now=later) == 1
    assert not CLAIM.renew(rows, holder="killed", now=later)
    assert CLAIM.renew(rows, holder="next", now=later)
    assert TargetLease.objects.get().claimed_until == later + CLAIM.lasts


def test_only_the_holder_releases_a_claim_and_what_it_writes_goes_with_it():
    now = timezone.now()
    run = ledger_run(schedule_name="nightly", scheduled_for=now, status="running", worker="w1",
                     lease_until=now + timedelta(seconds=30))
    rows = ScheduleRun.objects.filter(pk=run.pk)
    assert RUN_LEASE.release(rows, holder="w2", status="succeeded") == 0
    assert RUN_LEASE.release(rows, holder="w1", status="succeeded") == 1
    run.refresh_from_db()
    assert (run.status, run.lease_until) == ("succeeded", None)


def test_the_row_of_a_claim_is_created_once_and_the_second_creator_is_told_it_lost():
    now = timezone.now()
    assert CLAIM.take_row(TargetLease, key={"target": "reports"}, holder="a", now=now)
    assert not CLAIM.take_row(TargetLease, key={"target": "reports"}, holder="b", now=now)
    assert TargetLease.objects.get().claimed_by == "a"


def test_a_claim_renewed_less_than_twice_per_duration_is_refused():
    with pytest.raises(ValueError, match="renewed at most every"):
        Claim(holder_field="h", until_field="u", lasts=timedelta(seconds=60), renew_every=timedelta(seconds=31))


def test_every_holder_name_is_place_pid_and_a_token_of_its_own():
    first, second = holder_name("celery@worker-1"), holder_name("celery@worker-1")
    place, pid, token = first.rsplit(":", 2)
    assert (place, pid.isdigit(), len(token)) == ("celery@worker-1", True, 8)
    assert first != second


def test_the_timing_rules_between_the_claims_hold():
    # A run claimed the usual distance ahead waits for its slot inside a claim taken at that
    # moment; one claimed further ahead holds its claim until past the slot (test_beat_steps).
    assert CLAIM_AHEAD * 2 <= BEAT_CLAIM.lasts
    # Leases renewed while work runs are renewed at least twice per lease.
    assert RUN_LEASE.renew_every * 2 <= RUN_LEASE.lasts
    assert TARGET_CLAIM.renew_every == timedelta(seconds=CHECKPOINT_SECONDS)
    assert TARGET_CLAIM.renew_every * 2 <= TARGET_CLAIM.lasts
    # A delivery's claim is never renewed: it outlasts one attempt's SMTP steps (connect, EHLO,
    # MAIL, RCPT, DATA, each up to the timeout) with room to spare.
    assert DELIVERY_CLAIM.renew_every is None
    assert DELIVERY_CLAIM.lasts > timedelta(seconds=5 * SMTP_TIMEOUT_SECONDS) * 2


def test_a_claim_written_before_the_expiry_column_existed_lapses_lasts_after_it_was_taken():
    now = timezone.now()
    old = ledger_run(schedule_name="nightly", status="claimed", claimed_at=now - timedelta(seconds=30))
    fresh = ledger_run(schedule_name="hourly", status="claimed", claimed_at=now - timedelta(seconds=5))

    assert BEAT_CLAIM.expire_from(ScheduleRun.objects.all(), claimed_at_field="claimed_at") == 2

    old.refresh_from_db(), fresh.refresh_from_db()
    assert old.claimed_until == old.claimed_at + BEAT_CLAIM.lasts
    assert BEAT_CLAIM.is_stale(old, now=now) and not BEAT_CLAIM.is_stale(fresh, now=now)
