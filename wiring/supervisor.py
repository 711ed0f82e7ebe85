"""The processes `make run` starts, kept running: one that stops on its own is started again.

Honcho's Manager stops every process when any one of them exits. For `make run` that turns one
crashed or killed worker into a stopped web, beat and evaluator: nobody is alerted and the admin
is gone. Here the stopped process is started again after a short backoff (1 s, doubling to 30 s
while it keeps stopping within a minute of its start), the others run on, and its stop is said
in the output. Ctrl-C or SIGTERM still stops everything.
"""

import datetime
import multiprocessing
import queue
import signal
import time

from honcho.manager import KILL_WAIT, SIGNALS, Manager

FIRST_BACKOFF_SECONDS = 1.0
LONGEST_BACKOFF_SECONDS = 30.0
# A process that ran this long before it stopped starts again at once (its backoff is reset).
STEADY_SECONDS = 60.0


class Supervisor(Manager):
    def loop(self) -> None:
        def _terminate(signum, frame):
            self._system_print(f"{SIGNALS[signum]['name']} received\n")
            self.returncode = SIGNALS[signum]["rc"]
            self.terminate()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self._start()
        started_at = {name: time.monotonic() for name in self._processes}
        backoff = dict.fromkeys(self._processes, FIRST_BACKOFF_SECONDS)
        restart_at: dict[str, float] = {}
        exit_start = None
        while True:
            try:
                msg = self.events.get(timeout=0.1)
            except queue.Empty:
                msg = None
            if msg is not None:
                self._handle(msg, started_at, backoff, restart_at)
            if not self._terminating:
                for name, when in list(restart_at.items()):
                    if time.monotonic() >= when:
                        del restart_at[name]
                        started_at[name] = time.monotonic()
                        self._restart(name)
            elif self._all_stopped():
                return
            elif exit_start is None:
                exit_start = self._clock.now()
            elif self._clock.now() - exit_start > datetime.timedelta(seconds=KILL_WAIT):
                self.kill()

    def _handle(self, msg, started_at: dict, backoff: dict, restart_at: dict) -> None:
        if msg.type == "line":
            self._printer.write(msg)
        elif msg.type == "start":
            self._processes[msg.name]["pid"] = msg.data["pid"]
            self._processes[msg.name].pop("returncode", None)
            self._system_print(f"{msg.name} started (pid={msg.data['pid']})\n")
        elif msg.type == "stop":
            self._processes[msg.name]["returncode"] = msg.data["returncode"]
            if self._terminating:
                self._system_print(f"{msg.name} stopped (rc={msg.data['returncode']})\n")
                return
            ran = time.monotonic() - started_at[msg.name]
            wait = FIRST_BACKOFF_SECONDS if ran >= STEADY_SECONDS else backoff[msg.name]
            backoff[msg.name] = min(LONGEST_BACKOFF_SECONDS, wait * 2)
            restart_at[msg.name] = time.monotonic() + wait
            self._system_print(f"{msg.name} stopped on its own (rc={msg.data['returncode']}) after {ran:.0f} s: "
                               f"starting it again in {wait:.0f} s; the others keep running\n")

    def _restart(self, name: str) -> None:
        process = self._processes[name]
        process["process"] = multiprocessing.Process(name=name, target=process["obj"].run, args=(self.events, True))
        process["process"].start()

    def _all_stopped(self) -> bool:
        return all(process.get("returncode") is not None for process in self._processes.values())
