"""Sending alert deliveries: an e-mail (HTML and text) or a webhook's JSON POST per delivery, each
claimed by one evaluator (DELIVERY_CLAIM), tried again after a backoff when the mail server or
the webhook fails for now, and its outcome kept on the row.

The evaluator sends them itself, not a Celery task: the alert that says no worker is alive must
not wait for a worker. It never sleeps for a retry either: a failed try sets next_attempt_at, and
a later pass picks the delivery up.
"""

import logging
import smtplib
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from monitoring.models import DELIVERY_CLAIM, AlertDelivery, Flip
from scraping import outbound
from scraping.fetcher import Outcome
from shared.backoff import backoff_seconds
from shared.claims import holder_name
from shared.links import linked

logger = logging.getLogger(__name__)

# Tries per delivery, the first included: the waits between them (30 s doubling, at most 15 min)
# add up to over an hour, past most mail server restarts and greylisting.
ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 15 * 60.0
SMTP_TIMEOUT_SECONDS = 20
PER_PASS = 200
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


class DeliveryFailed(Exception):
    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.reason, self.temporary = reason, temporary


def deliveries_send(*, now: datetime | None = None) -> int:
    """Try every delivery that is due (or whose sender stopped mid-try); return how many were tried."""
    now = now or timezone.now()
    holder = holder_name("evaluator")
    due = AlertDelivery.objects.filter(
        Q(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=now)
        | Q(DELIVERY_CLAIM.lapsed(now), status=AlertDelivery.Status.SENDING)
    ).select_related("flip").order_by("next_attempt_at")[:PER_PASS]
    tried = 0
    for delivery in due:
        claimable = AlertDelivery.objects.filter(pk=delivery.pk, status__in=[AlertDelivery.Status.PENDING,
                                                                              AlertDelivery.Status.SENDING])
        if not DELIVERY_CLAIM.take(claimable, holder=holder, now=now, free=Q(status=AlertDelivery.Status.PENDING),
                                   status=AlertDelivery.Status.SENDING, attempts=F("attempts") + 1):
            continue
        tried += 1
        delivery.refresh_from_db()
        _try(delivery, holder=holder)
    return tried


def _try(delivery: AlertDelivery, *, holder: str) -> None:
    rows = AlertDelivery.objects.filter(pk=delivery.pk, status=AlertDelivery.Status.SENDING)
    try:
        if delivery.channel == AlertDelivery.Channel.EMAIL:
            status = _email(delivery.flip, delivery.recipient)
        else:
            status = _webhook(delivery.flip, delivery.recipient)
    except DeliveryFailed as failed:
        final = not failed.temporary or delivery.attempts >= ATTEMPTS
        wait = timedelta(seconds=backoff_seconds(delivery.attempts, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS))
        logger.warning("alert %s to %s failed (try %d): %s", delivery.flip, delivery.recipient, delivery.attempts,
                       failed.reason)
        DELIVERY_CLAIM.release(rows, holder=holder, last_error=failed.reason[:2000],
                               status=AlertDelivery.Status.FAILED if final else AlertDelivery.Status.PENDING,
                               next_attempt_at=timezone.now() + wait)
        return
    DELIVERY_CLAIM.release(rows, holder=holder, status=status, sent_at=timezone.now(), last_error="")


def flip_link(flip: Flip) -> str:
    """Where a person reads about the flip: its run in the ledger, else the schedule's page."""
    if flip.run_id:
        path = reverse("admin:scheduler_schedulerun_change", args=[flip.run_id])
    elif flip.schedule_id:
        path = reverse("admin:django_celery_beat_periodictask_change", args=[flip.schedule_id])
    else:
        path = reverse("admin:index")
    return f"{settings.SITE_URL}{path}"


def flip_context(flip: Flip) -> dict:
    run = linked(flip, "run")
    error = run.error if run else ""
    return {"flip": flip, "link": flip_link(flip), "error": error, "site": settings.SITE_URL}


def _email(flip: Flip, address: str) -> str:
    context = flip_context(flip)
    message = EmailMultiAlternatives(
        subject=f"[scheduler] {flip.title}", body=render_to_string("monitoring/alert.txt", context),
        to=[address], connection=get_connection(fail_silently=False, timeout=SMTP_TIMEOUT_SECONDS),
    )
    message.attach_alternative(render_to_string("monitoring/alert.html", context), "text/html")
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as error:
        code, reply = next(iter(error.recipients.values()))
        raise DeliveryFailed(f"{code} {reply.decode(errors='replace')}", temporary=400 <= code < 500) from None
    except smtplib.SMTPResponseException as error:
        raise DeliveryFailed(f"{error.smtp_code} {error.smtp_error.decode(errors='replace')}",
                             temporary=400 <= error.smtp_code < 500) from None
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryFailed(f"{type(error).__name__}: {error}", temporary=True) from None
    # Without EMAIL_HOST the message went to this process's log: say so, not "sent".
    return AlertDelivery.Status.PRINTED if settings.EMAIL_BACKEND == CONSOLE_BACKEND else AlertDelivery.Status.SENT


def flip_payload(flip: Flip) -> dict:
    return {
        "subject": flip.subject, "schedule": flip.schedule_name or None, "from": flip.from_state,
        "to": flip.to_state, "cause": flip.cause or None, "why": flip.why, "slot": flip.slot, "at": flip.at,
        "reminder": flip.reminder, "link": flip_link(flip),
        "type": "RECOVERY" if flip.to_state == "up" else "ALERT",
    }


def _webhook(flip: Flip, url: str) -> str:
    answer = outbound.post_json(url, flip_payload(flip))
    if answer.outcome == Outcome.FETCHED:
        return AlertDelivery.Status.SENT
    # The gate's refusal and a 4xx other than 429 are the same next time; the rest may pass.
    permanent = answer.outcome == Outcome.REFUSED or (
        answer.status is not None and 400 <= answer.status < 500 and answer.status != 429)
    raise DeliveryFailed(f"{answer.outcome}: {answer.detail}", temporary=not permanent)
