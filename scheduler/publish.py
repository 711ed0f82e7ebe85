"""Beat's third step: publish claimed runs to Redis, each with its run's headers, and mark
them sent. "Run now" in the admin goes the same way: a claimed ledger row, then this."""

from django.db.models import Case, F, Value, When
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from scheduler.claim import run_now_claim
from scheduler.messages import Dispatch, run_headers
from scheduler.models import ScheduleRun

# What publishing raises when Redis cannot be reached: kombu's own (BatchPublishError from a
# pipeline that failed mid-way is one), redis-py's, or the socket's.
BROKER_ERRORS = (KombuError, RedisError, OSError)


def runs_publish(dispatches: list[Dispatch], *, app, producer) -> None:
    """Publish claimed runs in one Redis pipeline and mark them sent.

    If the broker fails, the runs stay claimed and are taken over once their claim lapses
    (scheduler.recover).
    """
    if not dispatches:
        return
    with producer.batch(max_size=10 * len(dispatches) + 10):
        for dispatch in dispatches:
            app.send_task(
                dispatch.task_name, dispatch.args, dispatch.kwargs, task_id=dispatch.task_id, producer=producer,
                **{**dispatch.options, "headers": {**dispatch.options["headers"], **run_headers(dispatch)}},
            )
    # A fast worker may already have started a run: its status stays, its send time is noted.
    # Beat's claim ends with the publish (recovery looks at claimed runs only; emptied all the same).
    ScheduleRun.objects.filter(id__in=[d.run_id for d in dispatches]).update(
        sent_at=timezone.now(), claimed_until=None,
        status=Case(When(status=ScheduleRun.Status.CLAIMED, then=Value(ScheduleRun.Status.SENT)), default=F("status")),
    )


def runs_send_now(*, tasks: list[PeriodicTask], node: str, app) -> list[Dispatch]:
    """Claim a manual run of each schedule and publish them; raises one of BROKER_ERRORS when
    Redis cannot be reached, and then the claimed runs are left for beat's recovery."""
    now = timezone.now()
    dispatches = [run_now_claim(task=task, now=now, node=node) for task in tasks]
    with app.producer_or_acquire() as producer:
        runs_publish(dispatches, app=app, producer=producer)
    return dispatches
