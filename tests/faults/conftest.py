"""Fixtures of the fault suite: a Redis of each test's own (so that it can be killed and
restarted), a PostgreSQL cluster of its own (stopped and started), short timeouts for every
process. (The table of scenarios at the end of the session: tests/faults/table.py.)"""

import pytest
from django.db import connection

from tests.faults.campaign import Campaign
from tests.faults.postgres_cluster import PostgresCluster, postgres_binaries
from wiring.embedded_redis import EmbeddedRedis

# Small limits through the variables the product reads, so that each fault resolves within
# seconds: a killed worker's message is handed out again after the visibility timeout, and
# beat and worker heartbeats go stale soon.
FAST = {
    "TASK_TIME_LIMIT": "6",
    "TASK_SOFT_TIME_LIMIT": "5",
    "BROKER_VISIBILITY_TIMEOUT": "8",
    "BEAT_STALE_SECONDS": "9",
    "WORKER_STALE_SECONDS": "9",
    # A killed worker's run is taken over once its lease lapses: 12 s, not a minute.
    "RUN_LEASE_SECONDS": "12",
    # Runs whose message Redis lost are looked for every 3 s, not every 15.
    "LOST_MESSAGE_CHECK_SECONDS": "3",
}


@pytest.fixture
def fault_redis(tmp_path):
    """A Redis of this test's own, with an append-only file; kill it with `.process.kill()` and
    start it again (same port and password) with `.start()`."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fault_env(app_env, fault_redis) -> dict:
    return {**app_env, "REDIS_URL": fault_redis.url, **FAST}


@pytest.fixture
def campaign(fault_env, start_process, tmp_path):
    # fault_env first: its Redis is set up before the processes and so stopped after them.
    campaign = Campaign(start_process, fault_env, tmp_path)
    yield campaign
    campaign.close()


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of this test's own, on a free port. Only when the suite runs on
    PostgreSQL: stopping SQLite means nothing (a file is there or not)."""
    if not on_postgresql():
        pytest.skip("PostgreSQL outage: the suite runs on SQLite (set DATABASE_URL to a PostgreSQL "
                    "database); SQLite is a file and cannot be stopped")
    if postgres_binaries() is None:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are needed for the outage scenario")
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        print(f"----- private PostgreSQL log -----\n{cluster.server_log()}")
        cluster.remove()
