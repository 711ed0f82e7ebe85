"""The beat scheduler class named in settings (CELERY_BEAT_SCHEDULER).

It reads django-celery-beat's schedules from the database, but unlike django-celery-beat's
own scheduler it keeps each schedule's next due time in a table (ScheduleState) and asks the
database only for what is due, claims each slot in the run ledger before publishing it, and
notices every edit (QuerySet.update included) through a change counter that database triggers
bump. Several beats may run at once: the ledger's unique slot makes each run go out once.
The work itself is in the steps' modules (sync, claim, publish, recover); this class is
Celery's loop around them.
"""

import logging
import threading
import time
from datetime import timedelta

import redis
from celery import beat, platforms
from celery.signals import beat_init
from celery.utils.collections import DictAttribute
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from scheduler.claim import (
    CLAIM_BATCH,
    claimed_ahead_release,
    claimed_ahead_still_valid,
    due_at_least,
    due_runs_claim,
)
from scheduler.publish import BROKER_ERRORS, runs_publish
from scheduler.recover import VanishedRuns, lost_runs_close, stranded_runs_recover
from scheduler.services import beat_heartbeat_record
from scheduler.sync import schedule_changes_version, schedules_sync, seconds_until_next_due
from shared.claims import holder_name

logger = logging.getLogger(__name__)

# Beat loops every few seconds; one row update this often is enough to tell alive from stopped
# (at least three times within BEAT_STALE_SECONDS, so one slow tick is not a stopped beat).
LIVENESS_EVERY_SECONDS = min(15, settings.BEAT_STALE_SECONDS / 3)
# Triggers bump a counter on every schedule edit; a full comparison of every schedule's
# definition also runs this often, to catch anything the triggers cannot see.
FULL_SYNC_EVERY_SECONDS = 60
RECOVER_EVERY_SECONDS = 5
# One tick never dispatches for longer than this, so liveness and edits stay current.
DISPATCH_SLICE_SECONDS = 10
# Slots are claimed this long before they are due, so that at a busy minute boundary (10,000
# schedules at once) the claims are already in the ledger and only publishing is left.
CLAIM_AHEAD = timedelta(seconds=8)
# When a burst is coming (at least BURST_RUNS due within CLAIM_AHEAD_MOST), further ahead: at
# 100,000 schedules in one minute, claiming took about half of beat's time, more than 8 s
# holds, so the slots went out up to a minute late (bench_beat.py --profile). Claiming is then
# done before the minute, and publishing is all that is left at it. A small site keeps the
# short horizon, so an edit made just before a slot still applies to it. A claim lasts until
# its slot and BEAT_CLAIM.lasts past it (claim._ledger_rows), however far ahead it was taken.
CLAIM_AHEAD_MOST = timedelta(seconds=45)
BURST_RUNS = 5_000
# Runs one beat holds claimed ahead at most (about 1 KB of memory each); past this it claims
# only CLAIM_AHEAD ahead. Giving them all back when it stops takes a few statements per 5,000.
HOLD_AT_MOST = 60_000
ERROR_BACKOFF_SECONDS = 5
PUBLISH_CHUNK = 250
VALIDATE_CHUNK = 4 * PUBLISH_CHUNK


class DatabaseScheduler(beat.Scheduler):
    # The longest beat sleeps: edits are seen, and new due times met, within about a second.
    max_interval = 1

    def __init__(self, *args, **kwargs):
        self.node = holder_name()
        self.started_at = timezone.now()
        self._liveness_recorded = float("-inf")
        self._synced = float("-inf")
        self._recovered = float("-inf")
        self._vanished = VanishedRuns()
        self._changes_seen = None
        self._broker_down = False
        # Set by SIGTERM or SIGINT (stop_between_ticks): the tick in progress ends its batch.
        self.stopping = threading.Event()
        # Runs claimed ahead of their slot, in slot order, published when their time comes.
        self._ahead: list = []
        kwargs["max_interval"] = self.max_interval
        super().__init__(*args, **kwargs)
        # No task-sent event per run from beat: the ledger records each send (sent_at), the
        # workers still send received, started and finished events for monitoring tools, and at
        # a busy minute the events were a tenth of beat's CPU (bench_beat.py --profile).
        self.app.conf.task_send_sent_event = False
        celery_settings_copied(self.app.conf)

    def setup_schedule(self):
        # Schedules live in the database and are read on each tick; nothing to load up front.
        self.data = {}

    @property
    def info(self):
        return "    . schedules -> database (django-celery-beat), run ledger: scheduler.ScheduleRun"

    def tick(self, *args, **kwargs):
        close_old_connections()
        try:
            self._sync_when_changed()
            self._recover_stranded()
            finished = self._dispatch_due()
            self.record_liveness()
            if not finished:
                return 0
            return self._seconds_to_sleep()
        except Exception:
            # Celery's loop would end beat on any exception, and with it every schedule. The
            # next tick tries again on a fresh connection; nothing is half-claimed, since every
            # claim is one transaction.
            logger.exception("beat: tick failed; trying again in %s s", ERROR_BACKOFF_SECONDS)
            close_old_connections()
            return ERROR_BACKOFF_SECONDS

    def _sync_when_changed(self) -> None:
        version = schedule_changes_version()
        if version == self._changes_seen and time.monotonic() - self._synced < FULL_SYNC_EVERY_SECONDS:
            return
        changed = schedules_sync(now=timezone.now())
        if changed:
            logger.info("beat: %d schedule(s) new or changed", changed)
        self._changes_seen, self._synced = version, time.monotonic()

    def _recover_stranded(self) -> None:
        if time.monotonic() - self._recovered < RECOVER_EVERY_SECONDS:
            return
        if not self._broker_reachable():
            # Taking runs over only to fail to send them would re-send each one every few
            # seconds of the outage; once Redis answers, they are taken over once.
            return
        self._recovered = time.monotonic()
        self._publish(stranded_runs_recover(now=timezone.now(), node=self.node))
        try:
            self._publish(self._vanished.recover(now=timezone.now(), node=self.node))
        except BROKER_ERRORS as error:
            logger.warning("beat: could not read the broker's messages to find lost runs: %s", error)
        lost = lost_runs_close(now=timezone.now())
        if lost:
            logger.warning("beat: %d run(s) lost with their worker recorded as failed", lost)

    def _dispatch_due(self) -> bool:
        """Claim slots up to CLAIM_AHEAD ahead, a batch at a time, and publish the ones whose
        time has come; False if there may be more to claim."""
        if not self._broker_reachable():
            # Claiming now would only strand runs; slots left unclaimed meet the missed-run
            # policy once Redis is back, as after beat's own downtime.
            return True
        started = time.monotonic()
        ahead = self._claim_horizon(timezone.now())
        while time.monotonic() - started < DISPATCH_SLICE_SECONDS and not self.stopping.is_set():
            now = timezone.now()
            if len(self._ahead) >= HOLD_AT_MOST:
                ahead = CLAIM_AHEAD
            dispatches, handled = due_runs_claim(now=now, until=now + ahead, node=self.node)
            self._ahead.extend(dispatches)
            self._ahead.sort(key=lambda d: d.scheduled_for)
            if not self._publish_come():
                return True
            if handled < CLAIM_BATCH:
                return True
        return False

    @staticmethod
    def _claim_horizon(now) -> timedelta:
        """How far ahead of its slot to claim a run, this tick (CLAIM_AHEAD_MOST)."""
        if due_at_least(until=now + CLAIM_AHEAD_MOST, count=BURST_RUNS):
            return CLAIM_AHEAD_MOST
        return CLAIM_AHEAD

    def _publish_come(self) -> bool:
        """Publish the runs claimed ahead whose slot has come; False if the broker failed."""
        now = timezone.now()
        come = [d for d in self._ahead if d.scheduled_for <= now]
        if not come:
            return True
        later = self._ahead[len(come):]
        # A thousand at a time: the first reach the workers sooner, and the check of each batch's
        # schedules stays one short statement (tens of thousands of ids were one IN list).
        for start in range(0, len(come), VALIDATE_CHUNK):
            # What is not published yet stays held, so that a broker failure gives it back too.
            self._ahead = come[start + VALIDATE_CHUNK:] + later
            if not self._publish(claimed_ahead_still_valid(come[start:start + VALIDATE_CHUNK], node=self.node)):
                return False
        return True

    def _seconds_to_sleep(self) -> float:
        now = timezone.now()
        sleep = seconds_until_next_due(now=now + CLAIM_AHEAD, longest=self.max_interval)
        if self._ahead:
            sleep = min(sleep, max(0.0, (self._ahead[0].scheduled_for - now).total_seconds()))
        return sleep

    def close(self):
        self._give_back_ahead()
        super().close()

    def _give_back_ahead(self) -> None:
        """Runs claimed ahead that this beat will not send (it stops, or lost the broker) become
        due again: the next beat to reach Redis claims them afresh, under the missed-run policy,
        instead of this one sending copies held in memory through an outage."""
        if not self._ahead:
            return
        try:
            given_back = claimed_ahead_release(self._ahead, node=self.node)
            logger.info("beat: gave back %d run(s) claimed ahead", given_back)
        except Exception:
            logger.exception("beat: could not give back %d run(s) claimed ahead; recovery will send them",
                             len(self._ahead))
        self._ahead = []

    def _broker_reachable(self) -> bool:
        if not self._broker_down:
            return True
        probe = redis.Redis.from_url(self.app.conf.broker_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            probe.ping()
        except BROKER_ERRORS:
            return False
        finally:
            probe.close()
        logger.info("beat: the broker at %s answers again", self.connection.as_uri())
        self._broker_down = False
        return True

    def _publish(self, dispatches) -> bool:
        # In chunks, each flushed to Redis as one pipeline: the first runs of a busy minute
        # reach the workers while the later ones are still being prepared.
        for start in range(0, len(dispatches), PUBLISH_CHUNK):
            chunk = dispatches[start:start + PUBLISH_CHUNK]
            try:
                sent = runs_publish(chunk, app=self.app, producer=self.producer, node=self.node)
            except BROKER_ERRORS as error:
                # These runs stay claimed; once the claim lapses a beat sends them or records why not.
                logger.error("beat: could not send %d run(s) to the broker at %s: %s", len(dispatches) - start,
                             self.connection.as_uri(), error)
                self._broker_down = True
                self._give_back_ahead()
                return False
            self._log_sent(sent)
        return True

    @staticmethod
    def _log_sent(chunk) -> None:
        if len(chunk) <= 10:
            for sent in chunk:
                logger.info("beat: sent %r for %s (run %s)", sent.schedule_name, sent.scheduled_for.isoformat(),
                            sent.run_id)
            return
        # Thousands of lines a minute would cost more than the sending; the ledger has each run.
        logger.info("beat: sent %d runs for %s to %s", len(chunk), chunk[0].scheduled_for.isoformat(),
                    chunk[-1].scheduled_for.isoformat())

    def record_liveness(self) -> None:
        """Record that this beat is alive (BeatHeartbeat), at most every LIVENESS_EVERY_SECONDS.

        Each tick calls it; public so that a test can show the throttle without running
        Celery's loop around the ticks.
        """
        if time.monotonic() - self._liveness_recorded < LIVENESS_EVERY_SECONDS:
            return
        self._liveness_recorded = time.monotonic()
        try:
            beat_heartbeat_record(node=self.node, started_at=self.started_at)
        except DatabaseError:
            # The admin will show beat as stale, which is the truth; beat itself goes on.
            logger.exception("beat: could not record that it is alive")

    def _ensure_connected(self):
        address = self.connection.as_uri()

        def report_unreachable(exc, interval):
            logger.error(
                "beat: cannot reach the broker at %s: %s. Trying again in %.0f seconds...",
                address, exc, interval,
            )

        return self.connection.ensure_connection(
            report_unreachable, self.app.conf.broker_connection_max_retries
        )


def celery_settings_copied(conf) -> None:
    """Make Celery read its CELERY_* settings from a copy taken now, not from Django's settings.

    Celery looks up a dozen settings for every message it sends, each under three spellings,
    and through Django's lazy settings object every miss raises and catches an AttributeError:
    41 µs a lookup instead of 7, an eighth of beat's CPU at a busy minute (bench_beat.py
    --profile). Beat's settings do not change while it runs; what is set on `conf` itself
    (conf.changes, the first map) still wins over the copy.
    """
    for position, source in enumerate(conf.maps):
        if isinstance(source, DictAttribute):
            # conf.prefix: the namespace the app was configured with ("CELERY_").
            conf.maps[position] = {name: getattr(settings, name) for name in dir(settings)
                                   if name.startswith(conf.prefix)}


@beat_init.connect
def stop_between_ticks(sender: beat.Service, **kwargs) -> None:
    """SIGTERM and SIGINT only ask beat to stop; it stops between two statements of its own.

    Celery's handler gives the claimed-ahead runs back from inside the signal handler, which runs
    wherever the main thread was, in the middle of a database call too: at 100,000 schedules it
    waited for good on the connection's lock the interrupted call held (beat was killed after
    90 s, its thousands of claims left held). Here the loop ends at its next check, at most a
    batch later, and Celery's own shutdown path (Service.sync, our close) gives them back.
    """
    scheduler = sender.scheduler

    def stop(signum, frame) -> None:
        if isinstance(scheduler, DatabaseScheduler):
            scheduler.stopping.set()
        sender.stop()

    platforms.signals.update(SIGTERM=stop, SIGINT=stop)
