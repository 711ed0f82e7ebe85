import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduler.default_schedules import DefaultSchedule, declared_default_schedules
from scheduler.models import BeatHeartbeat, WorkerHeartbeat


def heartbeat_record(*, worker: str) -> WorkerHeartbeat:
    now = timezone.now()
    beat, _ = WorkerHeartbeat.objects.update_or_create(
        worker=worker,
        defaults={"last_beat_at": now, "beats": F("beats") + 1},
        create_defaults={"first_beat_at": now, "last_beat_at": now, "beats": 1},
    )
    beat.refresh_from_db()  # beats was saved as an expression; read the number back
    return beat


def beat_heartbeat_record(*, node: str, started_at) -> None:
    now = timezone.now()
    BeatHeartbeat.objects.update_or_create(
        node=node, defaults={"last_beat_at": now}, create_defaults={"started_at": started_at, "last_beat_at": now}
    )


def _schedule_fields(declared: DefaultSchedule) -> dict:
    if declared.every is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=int(declared.every.total_seconds()), period=IntervalSchedule.SECONDS
        )
        return {"interval": interval}
    minute, hour, day_of_month, month_of_year, day_of_week = declared.crontab.split()
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=settings.TIME_ZONE,
    )
    return {"crontab": crontab}


def schedules_seed() -> list[tuple[str, bool]]:
    """Create the declared schedules that are missing; return (name, created) for each.

    An existing row keeps everything an admin may have changed (enabled flag, timing,
    arguments, description); only the task path, which is code's to own, is brought up to date.
    """
    seeded = []
    for declared in declared_default_schedules():
        _, created = PeriodicTask.objects.update_or_create(
            name=declared.name,
            defaults={"task": declared.task},
            create_defaults={
                "task": declared.task,
                "enabled": declared.enabled,
                "description": declared.description,
                **_schedule_fields(declared),
            },
        )
        seeded.append((declared.name, created))
    return seeded


@dataclass(frozen=True)
class StaffLogin:
    username: str
    created: bool
    # Set only when this call generated the password: it is shown once and never stored.
    generated_password: str | None


def staff_login_ensure(*, username: str, email: str, password: str | None) -> StaffLogin:
    """Make sure `username` can log in to the admin; a given password always wins."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    generated = None
    created = user is None
    if created:
        generated = None if password else secrets.token_urlsafe(12)
        user = user_model.objects.create_superuser(
            username=username, email=email, password=password or generated
        )
    elif password or not (user.is_staff and user.is_active):
        user.is_staff = user.is_active = True
        if password:
            user.set_password(password)
        user.save()
    return StaffLogin(username=username, created=created, generated_password=generated)
