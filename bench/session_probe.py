"""The bench's stand-in for site traffic: every 20 ms it reads and updates a random live session
and creates a new one (a visitor's data, bench/session_data.py), each its own short transaction,
timing each and counting errors.

Run by bench_session_cleanup.py with DATABASE_URL set; writes its figures as JSON on SIGTERM.
"""

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")

import django  # noqa: E402

django.setup()

from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402
from django.utils import timezone  # noqa: E402
from session_data import site_session  # noqa: E402

INTERVAL = 0.020


def main(out_path: str, ready_path: str) -> None:
    live = Session.objects.filter(expire_date__gt=timezone.now())
    live_keys = list(live.values_list("session_key", flat=True)[:5000])
    latencies: list[float] = []
    errors: list[str] = []
    created = 0
    rng = random.Random()
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    Path(ready_path).touch()
    next_tick = time.monotonic()
    while not stopping:
        key = random.choice(live_keys)
        for operation in ("read", "update", "create"):
            started = time.perf_counter()
            try:
                if operation == "read":
                    SessionStore(session_key=key).load()
                elif operation == "update":
                    store = SessionStore(session_key=key)
                    store["seen"] = time.time()
                    store.save()
                else:
                    store = SessionStore()
                    store.update(site_session(rng))
                    store.create()
                    created += 1
            except Exception as error:  # every failure a visitor would see counts
                errors.append(f"{operation}: {type(error).__name__}: {error}")
            latencies.append(time.perf_counter() - started)
        next_tick += INTERVAL
        time.sleep(max(0.0, next_tick - time.monotonic()))
    Path(out_path).write_text(json.dumps({"latencies": latencies, "errors": errors, "created": created}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
