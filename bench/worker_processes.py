"""Real Celery worker processes for the benchmarks (bench_scraping.py, bench_worker.py): started
in process groups of their own, their CPU (main process and pool children) and memory read from
outside with psutil, stopped whole."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peaks: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM bytes
    pss_peak: int = 0
    rss_peak: int = 0

    def procs(self):
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu(self) -> float:
        total = 0.0
        for proc in self.procs():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def sample_memory(self, with_pss: bool) -> None:
        rss = pss = 0
        for proc in self.procs():
            try:
                if with_pss:
                    info = proc.memory_full_info()
                    pss += info.pss
                    rss += info.rss
                else:
                    rss += proc.memory_info().rss
            except psutil.Error:
                pass
        self.rss_peak = max(self.rss_peak, rss)
        self.pss_peak = max(self.pss_peak, pss)

    def read_peaks(self) -> None:
        for proc in self.procs():
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                line = next(line for line in status.splitlines() if line.startswith("VmHWM"))
                self.peaks[proc.pid] = int(line.split()[1]) * 1024
            except (OSError, StopIteration):
                pass

    def ready(self) -> bool:
        return " ready." in self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def workers_start(count: int, concurrency: int, pool: str, env: dict, workdir: Path,
                  extra: tuple[str, ...] = ()) -> list[Worker]:
    """`count` workers (`celery -A scheduler worker -P pool -c concurrency` and `extra`), each in a
    process group of its own, once every one has said it is ready."""
    workers = []
    for index in range(count):
        name = f"bench{index + 1}"
        log = workdir / f"worker-{name}.log"
        argv = [PYTHON, "-m", "celery", "-A", "scheduler", "worker", "--loglevel", "INFO", "-n", f"{name}@%h",
                "-P", pool, "-c", str(concurrency), "--without-mingle", "--without-gossip", *extra]
        with log.open("w") as output:
            process = subprocess.Popen(argv, cwd=PROJECT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        workers.append(Worker(name, process, log))
    deadline = time.monotonic() + 90
    while not all(worker.ready() for worker in workers):
        for worker in workers:
            if worker.process.poll() is not None:
                sys.exit(f"worker {worker.name} exited ({worker.process.returncode}) at start-up; see {worker.log}")
        if time.monotonic() > deadline:
            sys.exit(f"the workers were not ready within 90 s; see {workdir}")
        time.sleep(0.2)
    return workers


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process's, not idle or waiting on disk)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def process_cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0
