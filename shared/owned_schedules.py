"""Schedules owned by a row (a report, a scraping source): the row's own fields say when it runs,
saving it creates or updates its PeriodicTask, deleting it deletes the schedule.

The owner has a one-to-one `schedule` field to django-celery-beat's PeriodicTask, and its task
takes one keyword argument naming the owner (`{"report_id": 7}`), which is how a run of a
schedule whose owner was deleted past its service (a queryset's delete() in the shell) finds the
schedules left behind.
"""

import json

from django.db import models
from django_celery_beat.models import PeriodicTask


def timing_row(model: type[models.Model], **fields) -> models.Model:
    """The crontab or interval row with `fields`, made when there is none. django-celery-beat
    allows two identical rows, where get_or_create would fail with MultipleObjectsReturned."""
    return model.objects.filter(**fields).order_by("pk").first() or model.objects.create(**fields)


# Beat's bookkeeping on a schedule row, kept while the owner keeps its row; the rest is the owner's.
BOOKKEEPING_FIELDS = ("last_run_at", "total_run_count", "date_changed")


def _owned_fields(*, task: str, owner_kwarg: str, owner: models.Model, name: str, **given) -> dict:
    """Every field of the owner's PeriodicTask: `given` (its timing, enabled, description), the
    task and its owner's keyword, and the model's default for everything else.

    Nothing a periodic-task editor set on the row survives the owner's save: headers replaced
    Celery's own, an exchange sent the runs where no worker reads, args and an expiry made every
    run fail. A field django-celery-beat adds later is reset too, without a change here.
    """
    fields = {field.name: field.get_default() for field in PeriodicTask._meta.concrete_fields
              if not field.primary_key and field.name not in BOOKKEEPING_FIELDS}
    return {**fields, "name": name, "task": task, "kwargs": json.dumps({owner_kwarg: owner.pk}), **given}


def owned_schedule_sync(*, owner: models.Model, task: str, owner_kwarg: str, name: str, **given) -> PeriodicTask:
    """Create or update `owner`'s PeriodicTask, rewriting every field of it (_owned_fields)."""
    fields = _owned_fields(task=task, owner_kwarg=owner_kwarg, owner=owner, name=name, **given)
    if owner.schedule_id:
        schedule = owner.schedule
        for field, value in fields.items():
            setattr(schedule, field, value)
        schedule.save()
        return schedule
    # A row of that name that is not the owner's yet (planted by a periodic-task editor, or left
    # from before) is taken over wholly, its bookkeeping too, never with what it held.
    schedule, _ = PeriodicTask.objects.update_or_create(
        name=name, defaults={**fields, "last_run_at": None, "total_run_count": 0})
    type(owner).objects.filter(pk=owner.pk).update(schedule=schedule)
    owner.schedule = schedule
    return schedule


def owned_schedule_delete(*, owner: models.Model) -> None:
    """Delete `owner` and its schedule (in the caller's transaction); past runs stay in the
    ledger, which keeps the schedule's name."""
    schedule_id = owner.schedule_id
    owner.delete()
    if schedule_id:
        PeriodicTask.objects.filter(pk=schedule_id).delete()


def orphaned_schedules_delete(*, task: str, owner_kwarg: str, owner_id: int) -> int:
    """Delete the schedules still running `task` for an owner that is gone; return how many."""
    orphans = PeriodicTask.objects.filter(task=task, kwargs=json.dumps({owner_kwarg: owner_id}))
    return orphans.delete()[1].get(PeriodicTask._meta.label, 0)
