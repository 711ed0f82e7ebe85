"""The leases of the runs a worker process is executing, renewed by one thread per process.

A running run's lease is held by the worker process running it: renewed while the task
executes; a worker killed with SIGKILL stops renewing, and once the lease lapses the run no
longer blocks its schedule and a redelivery may take it over.

A thread started and joined for every run cost each run a thread's start, a join and a database
wrapper of its own, for a renewal that a run shorter than `renew_every` (almost every run) never
made. One thread per process, started with the process's first run, renews every lease the
process holds each `renew_every`: a run registered just after a pass is renewed at the next one,
within `renew_every` of its start, so the lease (at least twice as long) never lapses while its
run executes. The thread dies with its process, so a killed worker's leases lapse as before.
"""

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from scheduler.models import ScheduleRun
from shared.claims import Claim

logger = logging.getLogger(__name__)

RUN_LEASE = Claim(holder_field="worker", until_field="lease_until", lasts=timedelta(seconds=settings.RUN_LEASE_SECONDS),
                  renew_every=timedelta(seconds=settings.RUN_LEASE_SECONDS / 3))


class LeaseRenewer:
    """Renews the leases registered with `holding()` every `claim.renew_every`, from one thread."""

    def __init__(self, claim: Claim = RUN_LEASE) -> None:
        self.claim = claim
        self._forget()
        # A pool process forked from one that had started the thread has no thread (and perhaps a
        # lock taken at the fork): it starts afresh with its first run.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, str] = {}  # run id -> holder
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, run_id: int, holder: str) -> Iterator[None]:
        """Keep `run_id`'s lease (held by `holder`) renewed for the duration of the block."""
        with self._lock:
            self._held[run_id] = holder
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._renew_forever, name="run-leases", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(run_id, None)

    def _renew_forever(self) -> None:
        wait = threading.Event().wait
        while True:
            wait(self.claim.renew_every.total_seconds())
            with self._lock:
                held = list(self._held.items())
            if held:
                self._renew(held)

    def _renew(self, held: list[tuple[int, str]]) -> None:
        for run_id, holder in held:
            try:
                if not self.claim.renew(ScheduleRun.objects.filter(id=run_id, status=ScheduleRun.Status.RUNNING),
                                        holder=holder, now=timezone.now()):
                    logger.warning("run %s is no longer running under this delivery's lease (%s): another "
                                   "took it over, recovery closed it, or its start was lost with the database",
                                   run_id, holder)
            except Exception:
                # One failed renewal must not end the others: the lease outlasts two.
                logger.exception("could not renew the lease of run %s", run_id)
                connection.close()
        # This thread's own connection, not kept between passes minutes apart.
        connection.close()


RUN_LEASES = LeaseRenewer()
