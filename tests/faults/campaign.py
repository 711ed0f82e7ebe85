"""One fault scenario's parts: probe schedules, real workers and beats, the faults, and the
end every scenario shares: pause the schedules, let the system settle (a bounded wait), and
count each (schedule, slot) from the probe's notes and the ledger (tests/faults/tally.py)."""

import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.processes import RealProcess, celery_argv, worker_argv
from tests.e2e.waiting import wait_until
from tests.faults import ledger
from tests.faults.tally import ROWS, Tally, probe_notes, tally

PROBE_WORKER = ("--include", "tests.faults.tasks", "--concurrency", "2")


class Campaign:
    def __init__(self, start_process, env: dict, tmp_path: Path, *, site=ledger) -> None:
        self.start_process = start_process
        self.env = env
        self.tmp_path = tmp_path
        self.site = site
        self.log = tmp_path / "probe.log"
        self.names: list[str] = []
        self.every = 0.0
        self.processes: list[RealProcess] = []

    def schedules(self, count: int, *, every: float, seconds: float = 0.0, queue: str | None = None,
                  prefix: str = "fault") -> list[str]:
        """`count` probe schedules every `every` seconds, each run taking `seconds`."""
        names = [f"{prefix}-{len(self.names) + i}" for i in range(count)]
        self.site.probe_schedules(names, every=every, log=str(self.log), seconds=seconds, queue=queue)
        self.names += names
        self.every = every
        return names

    def worker(self, name: str, *extra: str, **env: str) -> RealProcess:
        process = self.start_process(name, worker_argv(*PROBE_WORKER, "-n", f"{name}@%h", *extra),
                                     **{**self.env, **env})
        self.processes.append(process)
        return process

    def beat(self, name: str) -> RealProcess:
        process = self.start_process(name, celery_argv("beat", "--pidfile", str(self.tmp_path / f"{name}.pid")),
                                     **self.env)
        self.processes.append(process)
        return process

    def wait_succeeded(self, count: int, *, timeout: float = 60, names: list[str] | None = None) -> None:
        names = names or self.names
        wait_until(lambda: self.site.counts(names)["succeeded"] >= count, timeout=timeout, every=0.5,
                   what=lambda: f"{count} runs to succeed ({self.site.counts(names)})")

    def executing(self, names: list[str] | None = None) -> list[tuple[str, int]]:
        """(schedule, pid) of each execution the probe started and has not finished."""
        names = names or self.names
        return [(name, note["pids"][-1]) for (name, _slot), note in probe_notes(self.log).items()
                if name in names and note["start"] > note["done"]]

    def wait_executing(self, names: list[str] | None = None, *, timeout: float = 60) -> list[tuple[str, int]]:
        return wait_until(lambda: self.executing(names), timeout=timeout, every=0.1, what="a run executing")

    def close(self) -> None:
        """Stop every process, with little patience: what they did is counted already, and a
        worker holding retries for later would use all of the fixture's 20 s."""
        for process in self.processes:
            process.stop(timeout=5)

    def settle(self, *, timeout: float) -> float:
        """Pause the schedules and wait (at most `timeout` s) until no run is claimed, sent or
        running; then a few quiet seconds more, for a late second execution to show."""
        self.site.pause(self.names)
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline and self.site.counts(self.names)["unsettled"]:
            time.sleep(1)
        time.sleep(3)
        return time.monotonic() - started

    def finish(self, scenario: str, *, settle_timeout: float) -> Tally:
        """Settle, then count every schedule's slots as the row of `scenario`."""
        settled = self.settle(timeout=settle_timeout)
        return self.count(scenario, settled=settled)

    def count(self, scenario: str, *, names: list[str] | None = None, settled: float = 0.0,
              notes: Callable[[list[dict]], dict] | None = None) -> Tally:
        """The slots of `names` (default: every schedule), kept as a row of the session's table;
        `notes` adds the executions of schedules other than the probe's, from the ledger rows."""
        names = names or self.names
        rows = self.site.ledger(names)
        # The whole ledger of the scenario, for a look after the test.
        (self.tmp_path / f"ledger-{scenario.split('.')[0]}.json").write_text(json.dumps(rows, indent=1))
        executions = {**probe_notes(self.log), **(notes(rows) if notes else {})}
        result = tally(scenario, names, rows, executions, every=self.every)
        result.settle_seconds = settled
        ROWS.append(result)
        report = result.report()
        with (self.tmp_path / "tally.txt").open("a") as f:
            f.write(report + "\n")
        print(report)
        return result
