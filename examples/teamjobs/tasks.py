"""A team's own task. Any Celery task in an app named in EXTRA_APPS is offered in the schedule
form and, once scheduled, gets the run ledger, the missed-run policy, health and alerts; it
learns the slot it runs for from scheduled_for, never from the worker's clock."""

from celery import shared_task

from scheduler.worker import scheduled_for


@shared_task(bind=True)
def orders_digest(self, team: str = "ops") -> dict:
    slot = scheduled_for(self.request)
    # A real job would read or write something here; what it returns is the run's output.
    return {"team": team, "slot": slot.isoformat(), "day": slot.date().isoformat()}
