"""Sending a run's archived email to its recipients, each exactly once.

Each delivery row is claimed with a conditional UPDATE (pending or failed -> sending) before
its message is sent, so a second execution of the same task, a retry or `send_report` for the
same day finds the row taken or sent and leaves it alone. Temporary failures (4xx replies,
connection errors) are retried in rounds with exponential backoff and jitter; one recipient's
trouble never holds up or repeats another's.
"""

import logging
import random
import smtplib
import time
from email.mime.image import MIMEImage

from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import F, Q
from django.utils import timezone

from reports.models import ReportDelivery, ReportFile, ReportRun

logger = logging.getLogger(__name__)

ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 60.0
SMTP_TIMEOUT_SECONDS = 30


class SendFailure(Exception):
    def __init__(self, reply: str, *, temporary: bool) -> None:
        super().__init__(reply)
        self.reply, self.temporary = reply, temporary


def backoff_seconds(attempt: int) -> float:
    """Full jitter: a random wait up to base * 2**attempt, so retries from many runs spread out."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** attempt))


def deliveries_ensure(*, run: ReportRun, recipients: list[str]) -> None:
    # ignore_conflicts: a row another execution made already is the same delivery.
    ReportDelivery.objects.bulk_create(
        [ReportDelivery(run=run, recipient=address) for address in recipients], ignore_conflicts=True
    )


def delivery_claim(delivery: ReportDelivery, *, include_sent: bool = False) -> bool:
    """Take the delivery for this process; False when another one has it or it was sent."""
    claimable = [ReportDelivery.Status.PENDING, ReportDelivery.Status.FAILED]
    if include_sent:
        claimable.append(ReportDelivery.Status.SENT)
    return ReportDelivery.objects.filter(pk=delivery.pk, status__in=claimable).update(
        status=ReportDelivery.Status.SENDING, claimed_at=timezone.now()
    ) == 1


def deliveries_send(*, run: ReportRun, deliveries: list[ReportDelivery], attempts: int | None = None) -> None:
    """Send the claimed deliveries, retrying temporary failures in rounds with backoff."""
    waiting = list(deliveries)
    for attempt in range(attempts or ATTEMPTS):
        if attempt:
            time.sleep(backoff_seconds(attempt))
        still_failing = []
        for delivery in waiting:
            try:
                _send_one(run, delivery.recipient)
            except SendFailure as failure:
                _record_attempt(delivery, failure.reply)
                if failure.temporary:
                    still_failing.append(delivery)
                else:
                    _finish(delivery, ReportDelivery.Status.FAILED)
                continue
            _record_attempt(delivery, "")
            _finish(delivery, ReportDelivery.Status.SENT, sent_at=timezone.now())
        waiting = still_failing
        if not waiting:
            return
    for delivery in waiting:
        _finish(delivery, ReportDelivery.Status.FAILED)


def _record_attempt(delivery: ReportDelivery, reply: str) -> None:
    update = {"attempts": F("attempts") + 1}
    if reply:
        update["last_error"] = reply
        logger.warning("report email to %s failed: %s", delivery.recipient, reply)
    ReportDelivery.objects.filter(pk=delivery.pk).update(**update)


def _finish(delivery: ReportDelivery, status: str, **fields) -> None:
    ReportDelivery.objects.filter(Q(pk=delivery.pk), status=ReportDelivery.Status.SENDING).update(
        status=status, **fields
    )


def _send_one(run: ReportRun, recipient: str) -> None:
    message = email_message(run, recipient)
    try:
        message.connection = get_connection(fail_silently=False, timeout=SMTP_TIMEOUT_SECONDS)
        message.send()
    except smtplib.SMTPRecipientsRefused as error:
        code, reply = next(iter(error.recipients.values()))
        raise SendFailure(_reply(code, reply), temporary=400 <= code < 500) from None
    except smtplib.SMTPResponseException as error:
        raise SendFailure(_reply(error.smtp_code, error.smtp_error), temporary=400 <= error.smtp_code < 500) from None
    except (smtplib.SMTPException, OSError) as error:
        # Refused or dropped connections, timeouts: the server may be back in a moment.
        raise SendFailure(f"{type(error).__name__}: {error}", temporary=True) from None


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}"


def email_message(run: ReportRun, recipient: str) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(subject=run.subject, body=run.text, to=[recipient])
    message.attach_alternative(run.html, "text/html")
    for file in run.files.filter(attached=True):
        content = bytes(file.content)
        if file.kind == ReportFile.Kind.CHART:
            image = MIMEImage(content, _subtype="png")
            image.add_header("Content-ID", f"<{file.content_id}>")
            image.add_header("Content-Disposition", "inline", filename=file.filename)
            message.attach(image)
        else:
            message.attach(file.filename, content, file.content_type)
    return message
