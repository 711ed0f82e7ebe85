"""Beat's third step: publish claimed runs to Redis, each with its run's headers, and mark
them sent. "Run now" in the admin goes the same way: a claimed ledger row, then this."""

import logging

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from scheduler.claim import BEAT_CLAIM, run_now_claim
from scheduler.messages import Dispatch, run_headers
from scheduler.models import ScheduleRun

logger = logging.getLogger(__name__)

# What publishing raises when Redis cannot be reached: kombu's own (BatchPublishError from a
# pipeline that failed mid-way is one), redis-py's, or the socket's.
BROKER_ERRORS = (KombuError, RedisError, OSError)


def runs_publish(dispatches: list[Dispatch], *, app, producer, node: str) -> list[Dispatch]:
    """Publish the claimed runs that are still `node`'s claim under their task id, in one Redis
    pipeline, mark them sent, and return the ones published.

    A claim held in memory may have lapsed while the broker was down and been taken over by
    another beat's recovery under a new task id: publishing the old copy and marking the row
    sent by id alone would leave a row no worker runs (the worker drops a copy of another task
    id) and no beat looks at again. So the claims are first renewed in one conditional UPDATE,
    which only rows still held by `node` with the same task id pass and which keeps recovery
    off them while they are published; the rest are dropped here. If the broker fails, the
    runs stay claimed and are taken over once their claim lapses (scheduler.recover).
    """
    if not dispatches:
        return []
    held = _still_held(dispatches, node=node)
    dropped = len(dispatches) - len(held)
    if dropped:
        logger.warning("%d claimed run(s) not sent: another beat took them over since they were claimed", dropped)
    if not held:
        return []
    with producer.batch(max_size=10 * len(held) + 10):
        for dispatch in held:
            app.send_task(
                dispatch.task_name, dispatch.args, dispatch.kwargs, task_id=dispatch.task_id, producer=producer,
                **_declaring(dispatch.options),
                **{**dispatch.options, "headers": {**dispatch.options["headers"], **run_headers(dispatch)}},
            )
    # A fast worker may already have started a run: its status stays, its send time is noted.
    # Beat's claim ends with the publish (recovery looks at claimed runs only; emptied all the same).
    ScheduleRun.objects.filter(
        id__in=[d.run_id for d in held], task_id__in=[d.task_id for d in held],
    ).update(
        sent_at=timezone.now(), claimed_until=None,
        status=Case(When(status=ScheduleRun.Status.CLAIMED, then=Value(ScheduleRun.Status.SENT)), default=F("status")),
    )
    return held


def _declaring(options: dict) -> dict:
    """What a message must have declared before it is published.

    Routed by queue name alone (no exchange of its own), a message goes through the anonymous
    exchange, which Redis's transport turns into a push onto the queue's list: nothing needs
    declaring. Celery would check the queue's declaration on every message all the same, a
    tenth of beat's publishing at a busy minute (bench_beat.py --profile). A message naming an
    exchange is routed by that exchange's bindings, so Celery declares its queue as usual."""
    return {} if options.get("exchange") else {"declare": []}


def _still_held(dispatches: list[Dispatch], *, node: str) -> list[Dispatch]:
    rows = ScheduleRun.objects.filter(id__in=[d.run_id for d in dispatches],
                                      task_id__in=[d.task_id for d in dispatches], status=ScheduleRun.Status.CLAIMED)
    with transaction.atomic():
        BEAT_CLAIM.renew(rows, holder=node, now=timezone.now())
        held = set(rows.filter(BEAT_CLAIM.held_by(node)).values_list("id", "task_id"))
    return [dispatch for dispatch in dispatches if (dispatch.run_id, dispatch.task_id) in held]


def runs_send_now(*, tasks: list[PeriodicTask], node: str, app) -> list[Dispatch]:
    """Claim a manual run of each schedule and publish them; raises one of BROKER_ERRORS when
    Redis cannot be reached, and then the claimed runs are left for beat's recovery."""
    now = timezone.now()
    dispatches = [run_now_claim(task=task, now=now, node=node) for task in tasks]
    with app.producer_or_acquire() as producer:
        runs_publish(dispatches, app=app, producer=producer, node=node)
    return dispatches
