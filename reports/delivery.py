"""Sending a run's archived email to its recipients, each exactly once.

Each delivery row is claimed with a conditional UPDATE (pending or failed -> sending) just
before its own message is sent, so a second execution of the same task, a retry or
`send_report` for the same day finds the row taken or sent and leaves it alone, and a worker
that stops half-way leaves the recipients it had not reached pending for the next run.
Each call makes one attempt per recipient. Temporary failures (4xx replies, connection errors)
leave the row pending, and the task tries again through Celery's retry with a backoff that
spans greylisting's usual five minutes (backoff_seconds), so no worker waits inside a task; the
delivery rows make the retry send only what is still unsent, and one recipient's trouble never
holds up or repeats another's.

A row left "sending" (its worker was killed mid-send) is claimable again once its claim
(DELIVERY_CLAIM) has lapsed. The trade-off: a worker killed after the server accepted
the message and before the row was marked sent causes one duplicate email; that window is the
moment between the server's "250" and one UPDATE, against a recipient never getting it at all.
"""

import logging
import smtplib
from email.mime.image import MIMEImage

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import SafeMIMEMultipart, SafeMIMEText
from django.db.models import F, Q
from django.utils import timezone

from reports.models import DELIVERY_CLAIM, ReportDelivery, ReportFile, ReportRun
from shared.backoff import backoff_seconds as shared_backoff
from shared.claims import holder_name

logger = logging.getLogger(__name__)

# Tries per run, the first included. Greylisting servers refuse a new sender for five minutes
# or more; the four waits between five tries add up to at least 7.5 minutes (30+60+120+240 s,
# with the default MAIL_RETRY_BASE_SECONDS; the fault suite scales them down).
ATTEMPTS = 5
BACKOFF_BASE_SECONDS = settings.MAIL_RETRY_BASE_SECONDS
BACKOFF_CAP_SECONDS = 15 * 60.0
SMTP_TIMEOUT_SECONDS = 30


class SendFailure(Exception):
    def __init__(self, reply: str, *, temporary: bool) -> None:
        super().__init__(reply)
        self.reply, self.temporary = reply, temporary


def backoff_seconds(attempt: int) -> float:
    return shared_backoff(attempt, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS)


def deliveries_ensure(*, run: ReportRun, recipients: list[str]) -> None:
    # ignore_conflicts: a row another execution made already is the same delivery.
    ReportDelivery.objects.bulk_create(
        [ReportDelivery(run=run, recipient=address) for address in recipients], ignore_conflicts=True
    )


def delivery_claim(delivery: ReportDelivery, *, statuses: tuple[str, ...] | None = None) -> bool:
    """Take the delivery for this process; False when another one has it or it was sent.

    `statuses`: the states it may be taken from (default pending or failed); a "sending" row
    whose claim lapsed may always be taken.
    """
    now = timezone.now()
    if statuses is None:
        statuses = (ReportDelivery.Status.PENDING, ReportDelivery.Status.FAILED)
    free = [status for status in statuses if status != ReportDelivery.Status.SENDING]
    DELIVERY_CLAIM.expire_from(ReportDelivery.objects.filter(pk=delivery.pk, status=ReportDelivery.Status.SENDING),
                               claimed_at_field="claimed_at")
    holder = holder_name()
    taken = DELIVERY_CLAIM.take(
        ReportDelivery.objects.filter(pk=delivery.pk, status__in=[*free, ReportDelivery.Status.SENDING]),
        holder=holder, now=now, free=Q(status__in=free), status=ReportDelivery.Status.SENDING, claimed_at=now,
    ) == 1
    if taken:
        delivery.claimed_by = holder
    return taken


def deliveries_send(*, run: ReportRun, deliveries: list[ReportDelivery], final_attempt: bool = True) -> None:
    """One attempt for each delivery that can be claimed. A temporary failure leaves the row
    pending for a retry, unless this is the `final_attempt`: then it is failed, with the reply."""
    for delivery in deliveries:
        if not delivery_claim(delivery):
            continue  # sent meanwhile, or another execution is sending it
        failure = deliver_to_recipient(run, delivery)
        if failure is None:
            delivery_sent(delivery)
        elif failure.temporary and not final_attempt:
            # Pending while the retry waits: a concurrent execution may send it meanwhile.
            delivery_finish(delivery, ReportDelivery.Status.PENDING)
        else:
            delivery_finish(delivery, ReportDelivery.Status.FAILED)


def deliver_to_recipient(run: ReportRun, delivery: ReportDelivery) -> SendFailure | None:
    """One attempt for a claimed delivery: None when the server accepted it, else the failure."""
    handed_over = False
    try:
        message = email_message(run, delivery.recipient)
        handed_over = True
        _send(message)
    except SendFailure as failure:
        _record_attempt(delivery, failure.reply)
        return failure
    except BaseException as error:
        # A soft time limit or a bug. Before the hand-over nothing went out: pending again. After
        # it the server may have the message: the row stays "sending" until it is stale.
        if handed_over:
            _record_attempt(delivery, f"interrupted while sending: {type(error).__name__}: {error}")
        else:
            delivery_finish(delivery, ReportDelivery.Status.PENDING)
        raise
    _record_attempt(delivery, "")
    return None


def _record_attempt(delivery: ReportDelivery, reply: str) -> None:
    update = {"attempts": F("attempts") + 1}
    if reply:
        update["last_error"] = reply
        logger.warning("report email to %s failed: %s", delivery.recipient, reply)
    ReportDelivery.objects.filter(pk=delivery.pk).update(**update)


def delivery_finish(delivery: ReportDelivery, status: str, **fields) -> None:
    """Release our claim on the delivery, leaving it in `status`."""
    DELIVERY_CLAIM.release(ReportDelivery.objects.filter(pk=delivery.pk, status=ReportDelivery.Status.SENDING),
                           holder=delivery.claimed_by, status=status, **fields)


def delivery_sent(delivery: ReportDelivery) -> None:
    """The copy went out: the error of an earlier try no longer describes it."""
    delivery_finish(delivery, ReportDelivery.Status.SENT, sent_at=timezone.now(), last_error="")


def _send(message: EmailMessage) -> None:
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


def email_message(run: ReportRun, recipient: str) -> EmailMessage:
    """The run's email as mixed[ related[ alternative[text, html], png... ], csv... ].

    The charts sit in multipart/related beside the HTML that refers to them by cid:, which is
    where mail clients look for them; CSVs are attachments of the outer multipart/mixed.
    """
    encoding = settings.DEFAULT_CHARSET
    alternative = SafeMIMEMultipart(_subtype="alternative", encoding=encoding)
    alternative.attach(SafeMIMEText(run.text, "plain", encoding))
    alternative.attach(SafeMIMEText(run.html, "html", encoding))
    related = SafeMIMEMultipart(_subtype="related", encoding=encoding)
    related.attach(alternative)
    # One line whatever the run holds: runs built before report names were checked may carry a
    # line break, which the header check refuses on every attempt.
    message = EmailMessage(subject=" ".join(run.subject.split()), to=[recipient], attachments=[related])
    for file in run.files.filter(attached=True):
        content = bytes(file.content)
        if file.kind == ReportFile.Kind.CHART:
            image = MIMEImage(content, _subtype="png")
            image.add_header("Content-ID", f"<{file.content_id}>")
            image.add_header("Content-Disposition", "inline", filename=file.filename)
            related.attach(image)
        else:
            message.attach(file.filename, content, file.content_type)
    # With an empty body Django adds no text part of its own: the related part above is the body.
    return message
