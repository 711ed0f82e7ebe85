"""The README's run command as a new user meets it: start, log in, see heartbeats, Ctrl-C, again."""

import os
import re
import signal
import socket
import sys
from pathlib import Path

from tests.e2e.admin_http import AdminSession
from tests.e2e.waiting import wait_until
from wiring.embedded_redis import free_port

READY = "Stop everything with Ctrl-C."


def press_ctrl_c(launch) -> int:
    launch.signal_group(signal.SIGINT)
    return launch.process.wait(timeout=60)


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def redis_server_on(port: int) -> int:
    """The pid of the Redis server on this port: it names itself by its address (its title)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    title = cmdline.read()
            except OSError:
                continue
            if b"server" in title and f" 127.0.0.1:{port}".encode() in title:
                return int(entry.name)
    raise AssertionError(f"no Redis server running on port {port}")


def wait_for_page(admin: AdminSession, path: str, text: str, timeout: float) -> str:
    def page_showing_text() -> str | None:
        page = admin.get(path)
        return page if text in page else None

    return wait_until(page_showing_text, timeout=timeout, what=f"{path} to show {text!r}", every=2)


def test_the_run_command_serves_the_admin_runs_heartbeats_and_a_second_run_keeps_everything(
    start_process, tmp_path
):
    port = free_port()
    # No DATABASE_URL or REDIS_URL: the embedded defaults, in a data folder of this test's own.
    env = {"DATA_DIR": str(tmp_path / "data"), "WEB_BIND": f"127.0.0.1:{port}"}
    launch = start_process("launch-1", [sys.executable, "manage.py", "launch"], **env)
    output = launch.wait_for_output(READY, timeout=180)
    assert "Schedule 'Heartbeat': created" in output
    password = re.search(r"Log in as 'admin' with password (\S+)", output).group(1)
    redis_port = int(re.search(r"Embedded Redis started on 127\.0\.0\.1:(\d+)/0 \(Valkey 9\.1\.2, ", output).group(1))

    admin = AdminSession(f"http://127.0.0.1:{port}")
    admin.login("admin", password)
    schedules = admin.get("/admin/django_celery_beat/periodictask/")
    assert "Heartbeat" in schedules and "Expired session cleanup" in schedules
    # The heartbeat schedule runs every minute; its first run is a minute after beat starts.
    wait_for_page(admin, "/admin/scheduler/workerheartbeat/", "alive", timeout=120)
    assert "scheduler.tasks.heartbeat" in admin.get("/admin/django_celery_results/taskresult/")

    # A worker killed under `make run` is started again, every time (the second start hung once:
    # the forked starter blocked in kombu's after-fork hooks); web, beat and the evaluator run on.
    for kill in (1, 2):
        worker_pid = int(re.findall(r"worker started \(pid=(\d+)\)", launch.output())[-1])
        # The pid said is the worker's own, not the shell's that started it.
        argv = Path(f"/proc/{worker_pid}/cmdline").read_bytes().split(b"\0")
        assert any(arg.endswith(b"/celery") for arg in argv[:2]), argv  # not ["sh", "-c", ...]
        os.killpg(worker_pid, signal.SIGKILL)  # the worker and its pool (honcho starts each in its own group)
        launch.wait_for_output("worker stopped on its own", timeout=30, times=kill)
        launch.wait_for_output("worker started (pid=", timeout=60, times=kill + 1)
    assert "Heartbeat" in admin.get("/admin/django_celery_beat/periodictask/")
    assert launch.is_running()

    # The embedded Redis killed: started again at the same address (nothing restarted it before,
    # and the worker tried to connect every second until someone did).
    os.kill(redis_server_on(redis_port), signal.SIGKILL)
    launch.wait_for_output(f"Embedded Redis started again on 127.0.0.1:{redis_port}/0", timeout=30)
    assert "Embedded Redis stopped on its own (exit status -9)" in launch.output()

    assert press_ctrl_c(launch) == 0
    assert "Embedded Redis stopped." in launch.output()
    assert port_is_closed(port) and port_is_closed(redis_port)

    again = start_process("launch-2", [sys.executable, "manage.py", "launch"], **env)
    output = again.wait_for_output(READY, timeout=180)
    assert "Schedule 'Heartbeat': kept as it is" in output
    assert "with password" not in output and "the password printed on the first run" in output
    AdminSession(f"http://127.0.0.1:{port}").login("admin", password)
    assert press_ctrl_c(again) == 0
