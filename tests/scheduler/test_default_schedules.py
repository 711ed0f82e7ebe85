from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from scheduler import services
from shared.declarations import DefaultSchedule

pytestmark = pytest.mark.django_db


def test_it_creates_the_heartbeat_and_cleanup_schedules():
    seeded = dict(services.schedules_seed())
    assert seeded == {"Heartbeat": True, "Expired session cleanup": True, "Daily retention sweep": True}
    heartbeat = PeriodicTask.objects.get(name="Heartbeat")
    assert heartbeat.enabled and heartbeat.task == "scheduler.tasks.heartbeat"
    assert (heartbeat.interval.every, heartbeat.interval.period) == (60, "seconds")
    cleanup = PeriodicTask.objects.get(name="Expired session cleanup")
    assert cleanup.task == "cleanup.tasks.purge_expired_sessions"
    assert (cleanup.crontab.minute, cleanup.crontab.hour) == ("0", "*")
    sweep = PeriodicTask.objects.get(name="Daily retention sweep")
    assert sweep.task == "cleanup.tasks.retention_sweep_all"
    assert (sweep.crontab.minute, sweep.crontab.hour) == ("30", "3")


def test_it_keeps_what_an_admin_changed_when_seeded_again():
    services.schedules_seed()
    heartbeat = PeriodicTask.objects.get(name="Heartbeat")
    heartbeat.enabled = False
    heartbeat.kwargs = '{"note": "paused by ops"}'
    heartbeat.description = "ours now"
    heartbeat.save()

    assert not any(created for _, created in services.schedules_seed())

    heartbeat.refresh_from_db()
    assert (heartbeat.enabled, heartbeat.kwargs, heartbeat.description) == (
        False, '{"note": "paused by ops"}', "ours now"
    )
    assert PeriodicTask.objects.filter(name="Heartbeat").count() == 1


def test_a_schedule_with_nothing_to_work_on_is_created_disabled_with_what_to_configure(monkeypatch):
    waiting = DefaultSchedule(
        name="Needs a recipient", task="scheduler.tasks.heartbeat", every=timedelta(hours=1),
        enabled=False, description="Add a recipient, then enable this schedule.",
    )
    monkeypatch.setattr(services, "declared_default_schedules", lambda: [waiting])
    services.schedules_seed()
    row = PeriodicTask.objects.get(name="Needs a recipient")
    assert not row.enabled
    assert row.description == "Add a recipient, then enable this schedule."


def test_a_declaration_needs_exactly_one_timing():
    with pytest.raises(ValueError, match="exactly one of every or crontab"):
        DefaultSchedule(name="x", task="t", description="", every=timedelta(minutes=1), crontab="* * * * *")
