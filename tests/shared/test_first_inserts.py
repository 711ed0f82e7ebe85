"""inserted_first: of rows that may exist already, only the ones this call wrote come back, and
the rows already there are left as they were (another evaluator's health is its own)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler.models import ScheduleHealth, ScheduleRun
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


def test_one_row_already_there_comes_back_as_nothing_written():
    # A single object goes in as a one-row INSERT, whose skipped row the driver returns as None.
    task = interval_task("single", timedelta(minutes=5))
    assert inserted_first([health(task, "up")]) == {task.pk}
    assert inserted_first([health(task, "down")]) == set()
    assert ScheduleHealth.objects.get().state == "up"


def test_rows_without_a_key_get_one_and_the_returned_fields_tell_them_apart():
    task = interval_task("ledger", timedelta(minutes=5))
    now = timezone.now()

    def run(minutes: int, task_id: str) -> ScheduleRun:
        return ScheduleRun(schedule=task, schedule_name=task.name, task_name=task.task, claimed_at=now,
                           scheduled_for=now.replace(second=0, microsecond=0) + timedelta(minutes=minutes),
                           task_id=task_id)

    written = dict(inserted_first([run(0, "a"), run(1, "b")], returning=("task_id", "id")))
    assert written == dict(ScheduleRun.objects.values_list("task_id", "id"))
    # The slot of "a" is held already: "c" for the same slot is skipped, "d" is written.
    again = dict(inserted_first([run(0, "c"), run(2, "d")], returning=("task_id", "id")))
    assert set(again) == {"d"}
    assert ScheduleRun.objects.get(pk=again["d"]).scheduled_for == now.replace(second=0, microsecond=0) + timedelta(
        minutes=2)
