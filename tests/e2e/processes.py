"""Real processes for end-to-end tests: Celery workers and beats, `manage.py launch`.

Each runs in its own process group so that a test can kill it whole (SIGKILL included) and
teardown can always stop whatever is left.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_DIR
from tests.e2e.waiting import wait_until


class RealProcess:
    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, cwd=PROJECT_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float, *, times: int = 1) -> str:
        """The output once it holds `text` (`times` times: a message repeated on every retry)."""
        def printed() -> str | None:
            output = self.output()
            if output.count(text) >= times:
                return output
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) before printing {text!r}")
            return None

        repeated = f" {times} times" if times > 1 else ""
        return wait_until(printed, timeout=timeout, what=f"{self.name} to print {text!r}{repeated}")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20) -> int:
        if self.is_running():
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the group still holds (pool children included) goes too.
        self.signal_group(signal.SIGKILL)
        self.process.wait()
        self.log.close()
        return self.process.returncode


def celery_argv(kind: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "scheduler", kind, "--loglevel", "INFO", *extra]


def worker_argv(*extra: str) -> list[str]:
    # No mingle or gossip: nothing to learn from other workers, and start-up is seconds faster.
    return celery_argv("worker", "--concurrency", "1", "--without-mingle", "--without-gossip", *extra)
