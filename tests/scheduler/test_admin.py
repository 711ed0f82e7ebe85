import itertools
import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django_celery_beat.models import PeriodicTask

from scheduler.services import schedules_seed
from tests.builders import HEARTBEAT, crontab_of, interval_every

pytestmark = pytest.mark.django_db


def schedule_form(**fields) -> dict:
    interval = interval_every(timedelta(minutes=5))
    return {
        "name": "Nightly thing", "regtask": "", "task": "", "enabled": "on", "interval": interval.pk,
        "args": "[]", "kwargs": "{}", "priority": "", "queue": "", "exchange": "", "routing_key": "",
        "headers": "{}", "expire_seconds": "", "description": "",
        # The policy inline, left at its defaults.
        "scheduler_policy-TOTAL_FORMS": "1", "scheduler_policy-INITIAL_FORMS": "0",
        # The alerts inline (monitoring), left empty.
        "alert_settings-TOTAL_FORMS": "0", "alert_settings-INITIAL_FORMS": "0",
        "scheduler_policy-MIN_NUM_FORMS": "0", "scheduler_policy-MAX_NUM_FORMS": "1",
        "scheduler_policy-0-missed_runs": "once", "scheduler_policy-0-catch_up_limit": "3",
        "scheduler_policy-0-starting_deadline_seconds": "60", "scheduler_policy-0-overlap": "allow",
        **fields,
    }


LIST_URL = "/admin/django_celery_beat/periodictask/"
ADD_URL = f"{LIST_URL}add/"


def test_admin_pages_need_a_staff_login(client):
    response = client.get("/admin/django_celery_beat/periodictask/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_schedule_form_refuses_a_task_that_does_not_exist(staff_client):
    response = staff_client.post(
        "/admin/django_celery_beat/periodictask/add/", schedule_form(task="scheduler.tasks.no_such_task")
    )
    assert response.status_code == 200
    assert "There is no task named &#x27;scheduler.tasks.no_such_task&#x27;" in response.content.decode()
    assert not PeriodicTask.objects.filter(name="Nightly thing").exists()


def test_the_schedule_form_accepts_a_registered_task(staff_client):
    response = staff_client.post(
        "/admin/django_celery_beat/periodictask/add/", schedule_form(task="scheduler.tasks.heartbeat")
    )
    assert response.status_code == 302
    assert PeriodicTask.objects.get(name="Nightly thing").task == "scheduler.tasks.heartbeat"


def crontab_schedule_form(cron: str, *, zone: str = "UTC", **fields) -> dict:
    return schedule_form(interval="", crontab=crontab_of(cron, zone=zone).pk, task=HEARTBEAT, **fields)


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return response.context["adminform"].form.errors


def shown_next_runs(page: str) -> list[str]:
    return re.findall(r"<li>([^<]+)</li>", page.split('class="next-runs"')[1].split("</ol>")[0])


def weekday_times(zone: ZoneInfo, at: time, count: int) -> list[str]:
    """The next `count` weekday (Monday to Friday) times `at` in `zone`, as the admin shows them."""
    day, shown = datetime.now(zone).date(), []
    while len(shown) < count:
        moment = datetime.combine(day, at, tzinfo=zone)
        if moment > datetime.now(zone) and moment.weekday() < 5:
            shown.append(f"{moment:%a %Y-%m-%d %H:%M %Z}")
        day += timedelta(days=1)
    return shown


@pytest.mark.parametrize(("kwargs", "named"), [
    ('{"note": "paused by ops"}', "&#x27;note&#x27;"),
    ('{"worker": "celery@web-1", "beats": 3}', "&#x27;beats&#x27;, &#x27;worker&#x27;"),
])
def test_keyword_arguments_the_task_does_not_take_are_refused_naming_kwargs_and_the_name(staff_client, kwargs, named):
    response = staff_client.post(ADD_URL, schedule_form(task=HEARTBEAT, kwargs=kwargs))

    errors = form_errors(response)
    assert list(errors) == ["kwargs"], errors
    assert f"takes no argument named {named}" in str(errors["kwargs"])
    assert not PeriodicTask.objects.filter(name="Nightly thing").exists()


def test_more_positional_arguments_than_the_task_takes_are_refused_naming_args(staff_client):
    errors = form_errors(staff_client.post(ADD_URL, schedule_form(task=HEARTBEAT, args="[7]")))

    assert list(errors) == ["args"], errors
    assert "takes no positional arguments" in errors["args"][0]


def test_an_argument_the_task_needs_but_is_not_given_is_refused_naming_kwargs(staff_client):
    errors = form_errors(staff_client.post(ADD_URL, schedule_form(task="reports.tasks.report_send")))

    assert list(errors) == ["kwargs"], errors
    assert "needs the argument &#x27;report_id&#x27;" in str(errors["kwargs"])


def test_an_argument_given_both_by_position_and_by_name_is_refused_naming_kwargs(staff_client):
    form = schedule_form(task="reports.tasks.report_send", args="[7]", kwargs='{"report_id": 7}')

    errors = form_errors(staff_client.post(ADD_URL, form))

    assert list(errors) == ["kwargs"], errors
    assert "&#x27;report_id&#x27; is given in args too" in str(errors["kwargs"])


@pytest.mark.parametrize(("task", "args", "kwargs"), [
    ("reports.tasks.report_send", "[]", '{"report_id": 7}'),
    ("reports.tasks.report_send", "[7]", "{}"),
    # A bound task (bind=True) is called with itself first: that is not an argument to give.
    ("scraping.tasks.scrape_source", "[3]", '{"attempt": 2}'),
    (HEARTBEAT, "[]", "{}"),
])
def test_arguments_the_task_takes_are_accepted(staff_client, task, args, kwargs):
    response = staff_client.post(ADD_URL, schedule_form(task=task, args=args, kwargs=kwargs))

    assert response.status_code == 302, form_errors(response)
    assert PeriodicTask.objects.get(name="Nightly thing").kwargs == kwargs


@pytest.mark.parametrize("cron", ["0 4 31 2 *", "0 12 31 2 mon"])
def test_a_crontab_that_can_never_fire_is_refused_where_a_schedule_chooses_it(staff_client, cron):
    # Written past the crontab form (the ORM, an older release), so the schedule form must ask.
    errors = form_errors(staff_client.post(ADD_URL, crontab_schedule_form(cron)))

    assert errors["crontab"][0].startswith("This crontab can never run:"), errors
    assert not {"interval", "solar", "clocked", "task", "args", "kwargs"} & set(errors)
    assert not PeriodicTask.objects.filter(name="Nightly thing").exists()


def test_the_add_form_offers_a_preview_of_the_next_runs(staff_client):
    page = staff_client.get(ADD_URL).content.decode()

    assert 'name="_preview"' in page
    assert "Choose a schedule and press Preview next runs to see when it runs, before saving." in page


def test_preview_shows_the_next_runs_of_the_submitted_schedule_without_saving_it(staff_client):
    form = {**crontab_schedule_form("30 2 * * 1-5", zone="Europe/Berlin"), "_preview": "Preview next runs"}

    response = staff_client.post(ADD_URL, form)

    assert response.status_code == 200
    page = response.content.decode()
    assert shown_next_runs(page) == weekday_times(ZoneInfo("Europe/Berlin"), time(2, 30), 5)
    assert "Not saved yet." in page and "Times in Europe/Berlin." in page
    assert 'class="errornote"' not in page
    assert not PeriodicTask.objects.exists()


def test_preview_of_an_interval_lists_five_runs_an_interval_apart(staff_client):
    response = staff_client.post(ADD_URL, {**schedule_form(task=HEARTBEAT), "_preview": "Preview next runs"})

    # An interval starts at once, so at this second: the times show their seconds when they have some.
    shown = [datetime.strptime(text, "%a %Y-%m-%d %H:%M:%S UTC" if text.count(":") == 2 else "%a %Y-%m-%d %H:%M UTC")
             for text in shown_next_runs(response.content.decode())]
    assert [later - earlier for earlier, later in itertools.pairwise(shown)] == [timedelta(minutes=5)] * 4
    assert not PeriodicTask.objects.exists()


def test_a_form_refused_for_another_field_still_shows_the_next_runs_of_its_schedule(staff_client):
    form = crontab_schedule_form("30 2 * * 1-5", zone="Europe/Berlin", kwargs='{"note": "x"}')

    response = staff_client.post(ADD_URL, form)

    assert "kwargs" in form_errors(response)
    assert shown_next_runs(response.content.decode()) == weekday_times(ZoneInfo("Europe/Berlin"), time(2, 30), 5)


def test_a_preview_that_is_then_saved_saves_the_schedule(staff_client):
    form = crontab_schedule_form("30 2 * * 1-5")
    staff_client.post(ADD_URL, {**form, "_preview": "Preview next runs"})

    assert staff_client.post(ADD_URL, {**form, "_save": "Save"}).status_code == 302
    assert PeriodicTask.objects.get(name="Nightly thing").crontab.hour == "2"


def registered_task_box(page: str) -> tuple[list[str], str]:
    """The options selected in the *Task (registered)* box, and the *Task (custom)* box's value."""
    select = page.split('name="regtask"')[1].split("</select>")[0]
    custom = re.search(r'<input[^>]*name="task"[^>]*>', page).group(0)
    value = re.search(r'value="([^"]*)"', custom)
    return re.findall(r'<option value="([^"]*)" selected', select), value.group(1) if value else ""


def test_a_seeded_schedule_shows_its_task_selected_in_the_registered_task_box(staff_client):
    schedules_seed()

    for schedule in PeriodicTask.objects.all():
        page = staff_client.get(f"{LIST_URL}{schedule.pk}/change/").content.decode()
        assert registered_task_box(page) == ([schedule.task], ""), schedule.name


def test_a_seeded_schedule_saved_as_shown_keeps_its_task(staff_client):
    schedules_seed()
    heartbeat = PeriodicTask.objects.get(name="Heartbeat")
    page = staff_client.get(f"{LIST_URL}{heartbeat.pk}/change/")
    [selected], custom = registered_task_box(page.content.decode())
    form = {**schedule_form(name="Heartbeat", regtask=selected, task=custom, interval=heartbeat.interval_id),
            "description": heartbeat.description}

    response = staff_client.post(f"{LIST_URL}{heartbeat.pk}/change/", form)

    assert response.status_code == 302, form_errors(response)
    heartbeat.refresh_from_db()
    assert heartbeat.task == HEARTBEAT


def test_two_different_tasks_in_the_registered_and_custom_boxes_are_refused_naming_the_task(staff_client):
    form = schedule_form(regtask=HEARTBEAT, task="cleanup.tasks.retention_sweep_all")

    errors = form_errors(staff_client.post(ADD_URL, form))

    assert list(errors) == ["task"], errors
    assert "scheduler.tasks.heartbeat" in errors["task"][0] and "cleanup.tasks.retention_sweep_all" in errors["task"][0]


def test_the_products_internal_tasks_are_neither_offered_nor_accepted(staff_client):
    page = staff_client.get(ADD_URL).content.decode()
    assert '<option value="scheduler.tasks.heartbeat">' in page
    assert "scheduler.tasks.run_outcome_write" not in page

    errors = form_errors(staff_client.post(ADD_URL, schedule_form(task="scheduler.tasks.run_outcome_write")))
    assert "is one of the product&#x27;s internal tasks" in str(errors["task"])
