"""/metrics for Prometheus (behind a bearer token) and /healthz for load balancers (open).

Both are GET only and outside the admin: no login, no CSRF (csrf_exempt only so that a POST is
answered 405 by the view rather than 403 by the CSRF middleware).
"""

import hmac
import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitoring.collector import LedgerCollector
from scheduler.broker import broker_answers
from scheduler.selectors import beat_liveness

logger = logging.getLogger(__name__)

# Prometheus scrapes every 15 to 60 s, often from two servers; within this long each process
# answers from the text it last rendered instead of reading the ledger again.
CACHE_SECONDS = 10
# A registry of our own: the global default one also carries process and platform collectors,
# which would report on whichever gunicorn worker happened to answer.
registry = CollectorRegistry()
registry.register(LedgerCollector())
_rendered = {"at": float("-inf"), "text": b""}
# One render at a time per process: scrapes arriving together wait for it rather than each
# reading the ledger.
_render_lock = threading.Lock()


@csrf_exempt
@require_GET
def metrics_view(request):
    if not settings.METRICS_TOKEN:
        return HttpResponse("Metrics are off until METRICS_TOKEN is set.\n", status=403, content_type="text/plain")
    if not _bearer_matches(request, settings.METRICS_TOKEN):
        response = HttpResponse("Send the token: Authorization: Bearer <METRICS_TOKEN>.\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


def metrics_text() -> bytes:
    with _render_lock:
        if time.monotonic() - _rendered["at"] >= CACHE_SECONDS:
            _rendered["text"] = generate_latest(registry)
            _rendered["at"] = time.monotonic()
        return _rendered["text"]


def _bearer_matches(request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Bytes, so a header with non-ASCII characters is a mismatch rather than a TypeError.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@csrf_exempt
@require_GET
def healthz_view(request):
    """200 when the database and Redis answer and a beat is alive, else 503; each check says which.
    Only fixed words in the answer: no URL (with its password) or error text reaches a caller."""
    database = _database_answers()
    found = {
        "database": "ok" if database else "error",
        "redis": "ok" if broker_answers() else "error",
        # Without the database there is no heartbeat to read.
        "beat": _beat_freshness() if database else "unknown",
    }
    healthy = found == {"database": "ok", "redis": "ok", "beat": "fresh"}
    found["status"] = "ok" if healthy else "error"
    return JsonResponse(found, status=200 if healthy else 503)


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        logger.warning("healthz: the database did not answer: %s", error)
        return False
    return True


def _beat_freshness() -> str:
    """fresh, stale or never, by the newest beat heartbeat."""
    state = beat_liveness()["state"]
    return "fresh" if state == "alive" else state
