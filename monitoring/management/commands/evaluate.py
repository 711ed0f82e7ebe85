"""`python manage.py evaluate`: the evaluator process (Procfile, `make run`, docker-compose).

Every few seconds: one evaluation pass (health of beat, workers and every schedule; a flip per
change; its deliveries), then the deliveries that are due; every few minutes, the dashboard's
summaries of the week's settled hours. A pass that fails is logged and the
next one tries again: the process that raises the alarm must not stop on one bad row.
"""

import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from monitoring.alerts import deliveries_send
from monitoring.dashboard_queries import week_summarised
from monitoring.evaluator import evaluation_pass
from shared.claims import holder_name

logger = logging.getLogger("monitoring.evaluator")

EVERY_SECONDS = 10.0
# An hour settles an hour after it ends; summarising it within minutes of that is soon enough.
SUMMARISE_EVERY_SECONDS = 600.0


class Command(BaseCommand):
    help = "Watch beat, the workers and every schedule's health; alert on each change. Runs until stopped."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass and the due deliveries, then exit")
        parser.add_argument("--every", type=float, default=EVERY_SECONDS, help="seconds between passes")

    def handle(self, *args, once: bool, every: float, **options) -> None:
        node, started_at = holder_name("evaluator"), timezone.now()
        stopping = threading.Event()
        if not once:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stopping.set())
            self.stderr.write(f"evaluator {node}: watching every {every:g} s")
        summarise_at = time.monotonic()
        while True:
            began = time.monotonic()
            close_old_connections()
            try:
                result = evaluation_pass(node=node, started_at=started_at, now=timezone.now())
                sent = deliveries_send()
                for flip in result.flips:
                    logger.info("%s%s", flip.title, f" ({flip.silenced})" if flip.silenced else "")
                if sent:
                    logger.info("%d alert deliveries tried", sent)
            except Exception:
                logger.exception("evaluation pass failed; trying again in %g s", every)
            if began >= summarise_at:
                summarise_at = began + SUMMARISE_EVERY_SECONDS
                try:
                    week_summarised(now=timezone.now())
                except Exception:
                    # Only the dashboard's speed depends on it: it computes what is missing.
                    logger.exception("summarising the ledger's hours failed; trying again in %g s",
                                     SUMMARISE_EVERY_SECONDS)
            if once or stopping.wait(max(0.0, every - (time.monotonic() - began))):
                return
