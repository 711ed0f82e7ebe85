"""One pass of the evaluator: the health of beat, the workers and every schedule, each change of
it recorded once as a Flip, with the alert deliveries it calls for.

Several evaluators may run at once: a state is changed only by a conditional UPDATE from the
state that was read (SystemHealth, ScheduleHealth), and only the evaluator whose UPDATE changed
the row writes the flip, so each change is one flip. The evaluator is its own process, not a
task beat sends, so it still sees beat and every worker stop.

Who is told:
- a schedule turning late, down or failing, and its recovery from what was alerted;
- never for new → up, paused, unknown (beat is down: one "beat down" alert says so), or a
  schedule whose runs wait because no worker is alive (one "no workers" alert says so);
- not while a schedule is muted; while it stays down or failing, a reminder at its interval.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django_celery_beat.models import PeriodicTask

from monitoring.models import AlertDelivery, AlertSettings, EvaluatorHeartbeat, Flip, SystemHealth
from scheduler.health import Cause, Health, State, assess
from scheduler.health_reads import HealthSeen, Liveness, TaskSeen, Watched, liveness, schedules_watched
from scheduler.models import BeatHeartbeat, ScheduleHealth, ScheduleRun, WorkerHeartbeat
from shared.first_inserts import inserted_first

# A schedule alerted down or failing is reminded this often when it has no settings of its own.
DEFAULT_REMIND_MINUTES = AlertSettings._meta.get_field("remind_every_minutes").default
AFFECTED_NAMED = 20


@dataclass
class PassResult:
    flips: list[Flip] = field(default_factory=list)
    schedules: int = 0


def evaluation_pass(*, node: str, started_at: datetime, now: datetime) -> PassResult:
    result = PassResult()
    live = liveness(now=now)
    result.flips += _system_flips(live, now=now, watching_since=started_at)
    settings_of = {row.task_id: row for row in AlertSettings.objects.all()}
    watched = schedules_watched(now=now)
    result.schedules = len(watched)
    first_seen = []
    for schedule in watched:
        previous = schedule.health.state if schedule.health else State.NEW
        health = assess(schedule.seen, schedule.knobs, now=now, previous=previous, beat_alive=live.beat_alive,
                        workers_alive=live.workers_alive)
        if _undecided(health, live):
            continue
        if schedule.health is None:
            first_seen.append((schedule, health))
            continue
        flip = _schedule_record(schedule, health, now=now, live=live, alerts=settings_of.get(schedule.task.id))
        if flip is None:
            flip = _reminder(schedule, now=now, alerts=settings_of.get(schedule.task.id))
        if flip is not None:
            result.flips.append(flip)
    result.flips += _first_seen_record(first_seen, now=now, live=live, settings_of=settings_of)
    deliveries_create([flip for flip in result.flips if not flip.silenced], settings_of=settings_of, now=now)
    EvaluatorHeartbeat.objects.update_or_create(node=node, defaults={"last_beat_at": now},
                                                create_defaults={"started_at": started_at, "last_beat_at": now})
    return result


def _system_flips(live: Liveness, *, now: datetime, watching_since: datetime) -> list[Flip]:
    flips = []
    beat = ("up", "a beat is alive") if live.beat_alive else ("down", _silence_of("beat", BeatHeartbeat))
    workers = (("up", f"{live.workers} worker(s) alive") if live.workers_alive
               else ("down", _silence_of("workers", WorkerHeartbeat) + _affected()))
    for part, (state, why), stale_after in ((SystemHealth.Part.BEAT, beat, BeatHeartbeat.STALE_AFTER),
                                            (SystemHealth.Part.WORKERS, workers, WorkerHeartbeat.STALE_AFTER)):
        if state == State.DOWN and now - watching_since < stale_after:
            # Just started (with `make run`, beside beat and the workers): too soon to tell a
            # process that has not beaten yet from one that stopped.
            continue
        flip = _system_record(part, state, why, now=now)
        if flip is not None:
            flips.append(flip)
    return flips


def _silence_of(what: str, heartbeat) -> str:
    latest = heartbeat.objects.first()
    if latest is None:
        return f"no {what} has ever recorded a heartbeat"
    return f"no {what} heartbeat since {latest.last_beat_at:%Y-%m-%d %H:%M:%S} UTC ({latest})"


def _affected() -> str:
    waiting = (ScheduleRun.objects.filter(status=ScheduleRun.Status.SENT).values_list("schedule_name", flat=True)
               .distinct().order_by("schedule_name"))
    names = list(waiting[:AFFECTED_NAMED + 1])
    enabled = PeriodicTask.objects.filter(enabled=True).count()
    affected = ", ".join(names[:AFFECTED_NAMED]) + (", ..." if len(names) > AFFECTED_NAMED else "")
    return (f". Runs waiting for a worker: {affected or 'none yet'}. Every one of the {enabled} enabled "
            "schedules waits until a worker is back.")


def _system_record(part: str, state: str, why: str, *, now: datetime) -> Flip | None:
    row = SystemHealth.objects.filter(part=part).first()
    if row is None:
        try:
            with transaction.atomic():
                SystemHealth.objects.create(part=part, state=state, why=why, since=now)
        except IntegrityError:
            return None  # another evaluator recorded it first
        if state == State.UP:
            return None
        previous = State.NEW
    elif row.state == state:
        return None
    else:
        previous = row.state
    with transaction.atomic():
        if row is not None and not SystemHealth.objects.filter(part=part, state=previous).update(
                state=state, why=why, since=now):
            return None
        return Flip.objects.create(subject=part, from_state=previous, to_state=state, why=why, at=now,
                                   cause=Cause.RECOVERED if state == State.UP else "")


QUIET_FIRST_STATES = (State.NEW, State.UP, State.PAUSED)
# A pass records at most this many first-seen schedules with nothing to tell (new, up, paused),
# so that the first pass over 10,000 schedules takes as long as any other (making 10,000 rows
# was half of it); the rest are recorded by the next passes, seconds apart. Every first-seen
# schedule with something to tell is recorded, and alerted, in the pass that sees it.
QUIET_FIRST_PER_PASS = 1000


def _undecided(health: Health, live: Liveness) -> bool:
    """A run waiting although beat or every worker may just have stopped: its state is held
    until their staleness tells (then one "beat down" or "no workers" alert says it), so people
    are not told "late" for each schedule first. Whoever beat after the run's slot is alive."""
    if health.slot is None or health.state not in (State.LATE, State.DOWN):
        return False
    if health.cause == Cause.NOT_STARTED:
        return live.workers_alive and (live.last_worker_at is None or live.last_worker_at < health.slot)
    if health.cause == Cause.NOT_SENT:
        return live.beat_alive and (live.last_beat_at is None or live.last_beat_at < health.slot)
    return False


def _health_fields(health: Health, now: datetime) -> dict:
    return {"state": health.state, "cause": health.cause, "why": health.why, "slot": health.slot,
            "run_id": health.run_id, "evaluated_at": now}


def _first_seen_record(first_seen: list[tuple[Watched, Health]], *, now: datetime, live: Liveness,
                       settings_of: dict[int, AlertSettings]) -> list[Flip]:
    """The health of schedules no pass recorded yet (of the quiet ones, up to
    QUIET_FIRST_PER_PASS), in one INSERT; a flip for each that is not new, up or paused, when
    this evaluator wrote its row (a row another evaluator wrote first is that one's to tell)."""
    rows, flips, quiet = [], {}, 0
    for schedule, health in first_seen:
        if health.state in QUIET_FIRST_STATES:
            quiet += 1
            if quiet > QUIET_FIRST_PER_PASS:
                continue  # recorded by a later pass, which sees it first-seen again
        row = ScheduleHealth(task_id=schedule.task.id, since=now, **_health_fields(health, now))
        if health.state not in QUIET_FIRST_STATES:
            silenced = _silenced(schedule.task, State.NEW, health, now=now, live=live,
                                 alerts=settings_of.get(schedule.task.id))
            row.alerted_at = None if silenced else now
            flips[schedule.task.id] = _flip_of(schedule.task, State.NEW, health, now=now, silenced=silenced)
        rows.append(row)
    with transaction.atomic():
        written = inserted_first(rows)
        return Flip.objects.bulk_create([flip for task_id, flip in flips.items() if task_id in written])


def _schedule_record(schedule: Watched, health: Health, *, now: datetime, live: Liveness,
                     alerts: AlertSettings | None) -> Flip | None:
    """Write the health of a schedule already recorded; a Flip when it changed (and this
    evaluator changed it).

    A schedule that stays in its state is written only when its reason changes and it is not
    up: an up schedule's reason moves with every run, and 10,000 of them would cost 10,000
    writes a pass for nothing a person reads.
    """
    fields = _health_fields(health, now)
    task = schedule.task
    previous = schedule.health.state
    if previous == health.state:
        changed = (schedule.health.cause, schedule.health.why) != (health.cause, health.why)
        if changed and health.state != State.UP:
            ScheduleHealth.objects.filter(task_id=task.id, state=health.state).update(**fields)
        return None
    with transaction.atomic():
        if not ScheduleHealth.objects.filter(task_id=task.id, state=previous).update(since=now, **fields):
            return None
        silenced = _silenced(task, previous, health, now=now, live=live, alerts=alerts)
        if not silenced:
            ScheduleHealth.objects.filter(task_id=task.id).update(alerted_at=now)
        flip = _flip_of(task, previous, health, now=now, silenced=silenced)
        flip.save()
        return flip


def _flip_of(task: TaskSeen, previous: str, health: Health | HealthSeen, *, now: datetime, **extra) -> Flip:
    return Flip(schedule_id=task.id, schedule_name=task.name, from_state=previous, to_state=health.state,
                cause=health.cause, why=health.why, slot=health.slot, run_id=health.run_id, at=now, **extra)


def _silenced(task: TaskSeen, previous: str, health: Health, *, now: datetime, live: Liveness,
              alerts: AlertSettings | None) -> str:
    """Why this change is not alerted; "" when it is."""
    if health.state in (State.NEW, State.PAUSED, State.UNKNOWN):
        return f"not alerted: {health.state} is no news to act on"
    if health.state == State.UP:
        last = Flip.objects.filter(schedule_id=task.id, reminder=False).first()
        if last is None or last.silenced or not last.is_bad:
            return f"not alerted: {previous} → up follows no alert"
    if alerts and alerts.muted_until and alerts.muted_until > now:
        return f"muted until {alerts.muted_until:%Y-%m-%d %H:%M} UTC: {alerts.mute_reason}"
    if health.cause == Cause.NOT_STARTED and not live.workers_alive:
        return "covered by the “no workers” alert"
    return ""


def _reminder(schedule: Watched, *, now: datetime, alerts: AlertSettings | None) -> Flip | None:
    """A reminder that a schedule stays down or failing, once per its interval since the last alert."""
    health = schedule.health
    if health.state not in State.BAD or health.alerted_at is None:
        return None
    remind_every = alerts.remind_every if alerts else AlertSettings(remind_every_minutes=DEFAULT_REMIND_MINUTES
                                                                    ).remind_every
    if now - health.alerted_at < remind_every or (alerts and alerts.muted_until and alerts.muted_until > now):
        return None
    task = schedule.task
    with transaction.atomic():
        if not ScheduleHealth.objects.filter(task_id=task.id, alerted_at=health.alerted_at).update(alerted_at=now):
            return None
        flip = _flip_of(task, health.state, health, now=now, reminder=True)
        flip.save()
        return flip


def deliveries_create(flips: list[Flip], *, settings_of: dict[int, AlertSettings], now: datetime) -> int:
    """One delivery per recipient and channel of each flip, all in one INSERT; made again by
    another evaluator, the same rows."""
    rows = []
    for flip in flips:
        alerts = settings_of.get(flip.schedule_id)
        emails = (alerts.email_list if alerts and alerts.emails.strip() else []) or settings.ALERT_EMAILS
        webhook = (alerts.webhook_url if alerts and alerts.webhook_url else "") or settings.ALERT_WEBHOOK_URL
        rows += [AlertDelivery(flip=flip, channel=AlertDelivery.Channel.EMAIL, recipient=email, next_attempt_at=now)
                 for email in emails]
        if webhook:
            rows.append(AlertDelivery(flip=flip, channel=AlertDelivery.Channel.WEBHOOK, recipient=webhook,
                                      next_attempt_at=now))
    AlertDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
