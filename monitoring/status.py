"""What the admin's home page says about the whole system: beat, the workers, the evaluator, runs
waiting, e-mail, and every schedule's health with the worst first."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Case, Count, IntegerField, Value, When
from django.utils import timezone

from monitoring.alerts import CONSOLE_BACKEND
from monitoring.models import EvaluatorHeartbeat
from scheduler.broker import broker_answers
from scheduler.health import State
from scheduler.models import ScheduleHealth, ScheduleRun, WorkerHeartbeat
from scheduler.selectors import beat_liveness

WORST_SHOWN = 8
# Runs sent this long ago and not started mean no worker takes them (or too few do).
WAITING_TOO_LONG = timedelta(minutes=2)


def system_status() -> dict:
    now = timezone.now()
    workers = list(WorkerHeartbeat.fresh(now=now).values_list("worker", flat=True))
    evaluator = EvaluatorHeartbeat.objects.first()
    waiting = ScheduleRun.objects.filter(status=ScheduleRun.Status.SENT, scheduled_for__lt=now - WAITING_TOO_LONG)
    counts = dict(ScheduleHealth.objects.values_list("state").annotate(count=Count("task")))
    # Worst first in SQL, so a page of them is the worst ones however many are bad.
    severity = Case(*(When(state=state, then=Value(rank)) for state, rank in State.SEVERITY.items()),
                    output_field=IntegerField())
    worst = list(ScheduleHealth.objects.filter(state__in=[State.DOWN, State.FAILING, State.LATE, State.UNKNOWN])
                 .select_related("task").order_by(severity, "since")[:WORST_SHOWN])
    return {
        "beat": beat_liveness(),
        "workers": workers,
        # Asked only when no worker is alive, where it is the likelier cause (the worker process
        # runs on, retrying its connection, and stops recording itself alive): a page that
        # said to start a worker sent people to start a second one while Redis was down.
        "broker_down": not workers and not broker_answers(),
        "evaluator": evaluator,
        "evaluator_stale": evaluator is None or evaluator.is_stale(now=now),
        "evaluator_seconds": int((now - evaluator.last_beat_at).total_seconds()) if evaluator else None,
        "waiting": waiting.count(),
        "oldest_waiting": waiting.order_by("scheduled_for").values_list("scheduled_for", flat=True).first(),
        "email_printed": settings.EMAIL_BACKEND == CONSOLE_BACKEND,
        "no_alert_recipients": not settings.ALERT_EMAILS and not settings.ALERT_WEBHOOK_URL,
        "counts": [(state, counts.get(state, 0)) for state in sorted(State.SEVERITY, key=State.SEVERITY.get)],
        "worst": worst,
    }
