"""(d) PostgreSQL stopped and started again while runs are executing and others wait in the
queue: on a cluster of the test's own, so the suite's own database stays up. PostgreSQL only."""

import time

import pytest

from tests.conftest import run_manage, subprocess_env
from tests.faults.campaign import Campaign
from tests.faults.ledger import RemoteSite

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 15
# A delivery that could not reach the ledger comes back 10 s later (scheduler.worker).
AFTER_RESTART_SECONDS = 12
# The suite's short limits (a 5 s soft limit): a run that ends just as the database goes away
# is interrupted by its soft limit while its outcome's write is retried, and its outcome must
# still be written once the database is back (it stayed "running" until the worker kept it).
LIMITS = {}


def test_postgres_stopped_and_started(private_postgres, fault_env, start_process, tmp_path):
    # In this order, so that the processes are stopped before Redis and the cluster.
    env = {**fault_env, **LIMITS, "DATABASE_URL": private_postgres.create_database("faults")}
    migrated = run_manage("migrate", "--no-input", env=subprocess_env(**env), timeout=300)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    campaign = Campaign(start_process, env, tmp_path, site=RemoteSite(env))
    # Two schedules every 2 s whose runs take 2.5 s, on two processes: runs always executing,
    # and the queue slowly growing.
    campaign.schedules(2, every=2, seconds=2.5)
    campaign.worker("worker")
    campaign.beat("beat")
    campaign.wait_succeeded(4)
    campaign.wait_executing()

    private_postgres.stop("fast")
    time.sleep(OUTAGE_SECONDS)
    private_postgres.start()
    time.sleep(AFTER_RESTART_SECONDS)

    try:
        result = campaign.finish("d. PostgreSQL stopped and started", settle_timeout=60)
    finally:
        campaign.close()
    assert result.holds(), result.report()
