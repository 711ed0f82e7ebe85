"""(a) Two beats share the schedules and one is killed with SIGKILL: what it had claimed ahead
is taken over by the other once its claim lapses (20 s), and nothing goes out twice."""

import signal
import time

import pytest

from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# The killed beat's claims lapse after 20 s and recovery looks every 5 s.
AFTER_KILL_SECONDS = 26


def test_two_beats_one_killed(campaign):
    campaign.schedules(3, every=1)
    campaign.worker("worker")
    beats = {beat.process.pid: beat for beat in (campaign.beat("beat-1"), campaign.beat("beat-2"))}
    campaign.wait_succeeded(9)

    # The beat to kill is one holding claims (slots claimed ahead, not sent yet): its holder
    # name is host:pid:token.
    def claiming_beat():
        held = {int(row["claimed_by"].split(":")[1]) for row in campaign.site.ledger(campaign.names)
                if row["status"] == "claimed"}
        return next((beat for pid, beat in beats.items() if pid in held), None)

    doomed = wait_until(claiming_beat, timeout=30, what="a beat holding claims")
    doomed.signal_group(signal.SIGKILL)
    doomed.process.wait(timeout=10)
    survivor = next(beat for beat in beats.values() if beat is not doomed)
    # The survivor runs alone past the killed beat's claims lapsing and being taken over.
    time.sleep(AFTER_KILL_SECONDS)

    result = campaign.finish("a. two beats, one SIGKILLed", settle_timeout=40)
    assert survivor.is_running()
    assert result.holds(), result.report()
