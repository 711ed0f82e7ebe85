"""A real worker checks every report data source as it starts: one log line each, and a source
that reports may not use is a warning, never a crash."""

import pytest
from django.db import connection

from tests.e2e.processes import worker_argv

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_logs_each_data_source_at_start_and_runs_on_past_one_it_may_not_use(start_process, app_env):
    env = {**app_env, "REPORT_SOURCE_SHOP_URL": "mysql://reader@127.0.0.1/shop"}
    if connection.vendor == "postgresql":
        env["REPORT_SOURCE_ADMIN_URL"] = app_env["DATABASE_URL"]  # the tests' own role, a superuser
    worker = start_process("worker", worker_argv("-Q", "reports"), **env)
    output = worker.wait_for_output("data source 'shop'", timeout=60)

    assert "data source 'default': reports read it through" in output
    assert "data source 'shop': reports cannot read through it: REPORT_SOURCE_SHOP_URL: reports read only" in output
    if connection.vendor == "postgresql":
        assert "data source 'admin': reports cannot read through it: Data source 'admin' connects as" in output
        assert "a superuser" in output
    assert "ready." in worker.wait_for_output("ready.", timeout=30) and worker.is_running()
