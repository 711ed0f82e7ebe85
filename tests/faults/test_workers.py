"""(e) A worker killed with SIGKILL mid-task, and separately a pool child killed mid-task.

Both at once, on two queues, each with its own worker: a killed run's lease (RUN_LEASE_SECONDS, 12 s here) lapses for
both within the same minute, which is what the scenario waits for.
"""

import os
import signal

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_and_pool_child_killed_mid_task(campaign):
    # The whole worker's schedules on the cleanup queue, the pool child's on default.
    whole = campaign.schedules(2, every=2, seconds=2, queue="cleanup", prefix="fault-whole")
    child = campaign.schedules(2, every=2, seconds=2, queue="default", prefix="fault-child")
    doomed = campaign.worker("worker-whole", "-Q", "cleanup")
    campaign.worker("worker-child", "-Q", "default")
    campaign.beat("beat")
    campaign.wait_succeeded(4, names=whole)
    campaign.wait_succeeded(4, names=child)

    # A pool child of worker-child, mid-task: its parent starts another and requeues the task.
    _name, pid = campaign.wait_executing(child)[0]
    os.kill(pid, signal.SIGKILL)
    # All of worker-whole, mid-task: its message comes back after the visibility timeout, to
    # the worker started in its place.
    campaign.wait_executing(whole)
    doomed.signal_group(signal.SIGKILL)
    doomed.process.wait(timeout=10)
    campaign.worker("worker-whole-2", "-Q", "cleanup")
    campaign.wait_succeeded(campaign.site.counts(whole)["succeeded"] + 4, names=whole, timeout=60)

    # A run of a killed process is taken over once its lease (12 s here) lapses.
    settled = campaign.settle(timeout=100)
    results = [campaign.count("e1. worker SIGKILLed mid-task", names=whole, settled=settled),
               campaign.count("e2. pool child SIGKILLed mid-task", names=child, settled=settled)]
    assert all(result.holds() for result in results), "\n".join(result.report() for result in results)
