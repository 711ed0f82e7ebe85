"""`make run`: set up what is missing, then run web, worker, beat and the evaluator until Ctrl-C.

Every step is safe to repeat: a second run reuses the database, the schedules as the admin
left them and the staff login, and loses nothing.
"""

import os
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone
from honcho.environ import parse_procfile

from scheduler.models import WorkerHeartbeat
from wiring.embedded_redis import EmbeddedRedis
from wiring.staff_login import staff_login_ensure
from wiring.supervisor import FIRST_BACKOFF_SECONDS, LONGEST_BACKOFF_SECONDS, Supervisor


def web_host_and_port() -> tuple[str, int]:
    """WEB_BIND split, brackets off an IPv6 host (settings already checked its form)."""
    host, _, port = settings.WEB_BIND.rpartition(":")
    return host.strip("[]"), int(port)


class Command(BaseCommand):
    help = "Migrate, seed schedules, ensure a staff login, then run web, worker, beat and the evaluator."

    def handle(self, *args, **options) -> None:
        self.check_web_address_is_free()
        redis = None
        env = dict(os.environ)
        # The Procfile's gunicorn and celery are the ones installed beside this Python.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if not os.environ.get("REDIS_URL"):
            redis = EmbeddedRedis(Path(settings.DATA_DIR) / "redis", publish_url=True)
            env["REDIS_URL"] = redis.start()
            self.say(f"Embedded Redis started on {redis.address} ({redis.version}, password-protected)")
            # Like the Procfile's processes: started again if it stops, with the same backoff.
            redis.supervise(self.say, first_backoff=FIRST_BACKOFF_SECONDS, longest_backoff=LONGEST_BACKOFF_SECONDS)
        try:
            call_command("prepare", stdout=self.stdout)
            login = staff_login_ensure(
                username=settings.ADMIN_USERNAME,
                email=settings.ADMIN_EMAIL,
                password=settings.ADMIN_PASSWORD,
            )
            announce = threading.Thread(target=self.announce_when_ready, args=(login, timezone.now()), daemon=True)
            announce.start()
            sys.exit(self.run_processes(env))
        finally:
            if redis is not None:
                redis.stop()
                self.say("Embedded Redis stopped.")

    def check_web_address_is_free(self) -> None:
        """Fail with one line naming WEB_BIND, not gunicorn's retries buried in other output."""
        host, port = web_host_and_port()
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            # As gunicorn does, so a port left in TIME_WAIT by the last run counts as free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise CommandError(
                    f"WEB_BIND={settings.WEB_BIND} cannot be used ({error.strerror}); is another "
                    f"`make run` going? Choose another address, e.g. WEB_BIND=127.0.0.1:{port + 1} make run"
                ) from None

    def run_processes(self, env: dict) -> int:
        procfile = parse_procfile((Path(settings.BASE_DIR) / "Procfile").read_text())
        manager = Supervisor()
        for name, command in procfile.processes.items():
            # Honcho runs each through `sh -c`, and dash stays as the parent: the pid honcho
            # prints would be the shell's, and a person who stops that pid leaves the process
            # running. `exec` makes the printed pid the process's own, in the same group.
            manager.add_process(name, f"exec {command}", env=env, cwd=str(settings.BASE_DIR))
        # Every process stops on Ctrl-C or SIGTERM; one that stops on its own is started again.
        manager.loop()
        # Stopped on request (honcho reports 130 for SIGINT, 143 for SIGTERM) is a clean exit;
        # anything else is the status of the process that stopped on its own.
        return 0 if manager.returncode in (130, 143) else manager.returncode or 0

    def announce_when_ready(self, login, launched) -> None:
        host, port = web_host_and_port()
        # Listening on every address: the browser on this machine reaches it on loopback.
        host = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        url = f"http://{host}:{port}/admin/"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "login/", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            self.say(f"The web process did not answer at {url} within 2 minutes; see its log above.")
            return
        # The banner goes last, after the worker's start-up output, where a person sees it: once
        # a worker has recorded itself since this launch. Read from the database, not by a Celery
        # ping: the ping left kombu's connection pools in this process, whose after-fork hooks
        # then hung every process the supervisor started again, blocked on their sockets.
        while time.monotonic() < deadline and not WorkerHeartbeat.objects.filter(last_beat_at__gte=launched).exists():
            time.sleep(0.5)
        connection.close()  # this thread's
        if login.generated_password:
            how = f"password {login.generated_password}  (shown only this once; set ADMIN_PASSWORD to choose one)"
        elif settings.ADMIN_PASSWORD:
            how = "the password in ADMIN_PASSWORD"
        else:
            how = ("the password printed on the first run (forgot it? run with "
                   "ADMIN_PASSWORD=... to set a new one)")
        self.say(
            "\n" + "=" * 72 + f"\n  Admin ready: {url}\n  Log in as {login.username!r} with {how}"
            "\n  Heartbeat results appear within two minutes under Scheduler › Worker heartbeats."
            "\n  Stop everything with Ctrl-C.\n" + "=" * 72
        )

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()
