"""inserted_first: of rows that may exist already, only the ones this call wrote come back, and
the rows already there are left as they were (another evaluator's health is its own)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler.models import ScheduleHealth
from shared.first_inserts import inserted_first
from tests.builders import interval_task

pytestmark = pytest.mark.django_db


def health(task, state: str) -> ScheduleHealth:
    now = timezone.now()
    return ScheduleHealth(task=task, state=state, why=f"written as {state}", since=now, evaluated_at=now)


def test_only_the_rows_this_call_wrote_come_back_and_existing_rows_are_kept():
    tasks = [interval_task(f"first {number}", timedelta(minutes=5)) for number in range(4)]
    assert inserted_first([health(task, "up") for task in tasks[:2]]) == {tasks[0].pk, tasks[1].pk}

    assert inserted_first([health(task, "down") for task in tasks]) == {tasks[2].pk, tasks[3].pk}
    states = dict(ScheduleHealth.objects.values_list("task_id", "state"))
    assert states == {tasks[0].pk: "up", tasks[1].pk: "up", tasks[2].pk: "down", tasks[3].pk: "down"}
    assert inserted_first([]) == set()


def test_more_rows_than_one_statement_takes():
    # Django gives SQLite at most 999 parameters a statement: 9 columns x 300 rows is three.
    tasks = [interval_task(f"many {number}", timedelta(minutes=5)) for number in range(300)]
    assert inserted_first([health(task, "up") for task in tasks]) == {task.pk for task in tasks}
    assert ScheduleHealth.objects.count() == 300
