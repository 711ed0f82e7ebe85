"""The schedule list and change page: next due times in the schedule's timezone, last runs,
the next five run times, the cron in words and the missed-run policy inline."""

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.models import SchedulePolicy, ScheduleRun, ScheduleState
from scheduler.sync import schedules_sync
from tests.builders import crontab_task, interval_task, ledger_run, with_policy

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/django_celery_beat/periodictask/"
NEW_YORK = ZoneInfo("America/New_York")
FOUR_AM = "0 4 * * *"
TEN_MINUTES = timedelta(minutes=10)


def change_url(task: PeriodicTask) -> str:
    return f"{LIST_URL}{task.pk}/change/"


def state(task: PeriodicTask, *, next_due_at=None, problem: str = "") -> ScheduleState:
    """The state beat keeps for `task`, as beat computed it, with the given due time and problem."""
    schedules_sync(now=timezone.now())
    ScheduleState.objects.filter(task=task).update(next_due_at=next_due_at, problem=problem)
    return ScheduleState.objects.get(task=task)


def row_of(page: str, name: str) -> str:
    """The text of the list row whose name link reads `name`, tags stripped."""
    for row in re.findall(r"<tr>.*?</tr>", page, flags=re.S):
        if f">{name}</a>" in row:
            return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
    raise AssertionError(f"no row for {name!r}")


def next_local_times(zone: ZoneInfo, at: time, count: int) -> list[datetime]:
    day = datetime.now(zone).date()
    times = []
    while len(times) < count:
        moment = datetime.combine(day, at, tzinfo=zone)
        if moment > datetime.now(zone):
            times.append(moment)
        day += timedelta(days=1)
    return times


def test_the_list_shows_the_next_due_time_in_the_schedules_own_timezone(staff_client, settings):
    settings.TIME_ZONE = "UTC"
    crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)
    state(PeriodicTask.objects.get(name="Morning report"), next_due_at=datetime(2031, 1, 7, 9, 0, tzinfo=UTC))
    state(interval_task("Heartbeat", TEN_MINUTES), next_due_at=datetime(2031, 1, 7, 9, 5, tzinfo=UTC))

    page = staff_client.get(LIST_URL).content.decode()

    assert "2031-01-07 04:00 EST" in row_of(page, "Morning report")
    assert "At 04:00 AM (America/New_York)" in row_of(page, "Morning report")
    assert "2031-01-07 09:05 UTC" in row_of(page, "Heartbeat")
    assert "every 10 minutes" in row_of(page, "Heartbeat")


def test_the_list_says_paused_and_why_a_schedule_has_no_next_run(staff_client):
    state(interval_task("Switched off", TEN_MINUTES, enabled=False))
    state(crontab_task("Broken", "0 4 31 2 *", zone=NEW_YORK.key),
          problem="Cannot be scheduled: crontab 'At 04:00 AM, on day 31 of the month, only in February': Bad day")

    page = staff_client.get(LIST_URL).content.decode()

    assert "paused" in row_of(page, "Switched off")
    assert "Cannot be scheduled: crontab" in row_of(page, "Broken")


def test_the_list_shows_the_last_runs_outcome_and_duration(staff_client):
    report = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)
    ledger_run(report, datetime(2031, 1, 5, 9, tzinfo=UTC), took=3)
    ledger_run(report, datetime(2031, 1, 6, 9, tzinfo=UTC), status=ScheduleRun.Status.FAILED, took=2.5)
    interval_task("Never ran", TEN_MINUTES)

    page = staff_client.get(LIST_URL).content.decode()

    assert "Failed 2.5 s" in row_of(page, "Morning report")
    assert "Succeeded" not in row_of(page, "Morning report")
    assert "never" in row_of(page, "Never ran")


def test_the_list_runs_as_many_queries_for_twenty_schedules_as_for_two(staff_client):
    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(LIST_URL).status_code == 200
        return len(queries)

    for number in range(2):
        task = crontab_task(f"Report {number}", FOUR_AM, zone=NEW_YORK.key)
        state(task, next_due_at=timezone.now())
        ledger_run(task, timezone.now(), took=1)
    with_two = list_queries()
    for number in range(2, 20):
        task = interval_task(f"Interval {number}", timedelta(minutes=number))
        state(task, next_due_at=timezone.now())
        ledger_run(task, timezone.now(), took=1)

    assert list_queries() == with_two


def test_the_change_page_shows_the_cron_in_words_and_the_next_five_run_times_in_its_timezone(staff_client):
    task = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)

    page = staff_client.get(change_url(task)).content.decode()

    assert "At 04:00 AM (America/New_York)" in page
    shown = re.findall(r"<li>([^<]+)</li>", page.split('class="next-runs"')[1].split("</ol>")[0])
    assert shown == [f"{moment:%a %Y-%m-%d %H:%M %Z}" for moment in next_local_times(NEW_YORK, time(4), 5)]
    assert "Times in America/New_York." in page


def test_an_interval_schedule_shows_the_due_time_beat_keeps_then_every_interval_after(staff_client):
    task = interval_task("Every ten minutes", TEN_MINUTES)
    due = (timezone.now() + timedelta(minutes=3)).replace(microsecond=0, second=0)
    state(task, next_due_at=due)

    page = staff_client.get(change_url(task)).content.decode()

    for step in range(5):
        assert f"{due + timedelta(minutes=10 * step):%a %Y-%m-%d %H:%M UTC}" in page


def test_the_change_page_explains_a_schedule_that_can_never_run(staff_client):
    task = crontab_task("February 31st", "0 4 31 2 *", zone=NEW_YORK.key)

    page = staff_client.get(change_url(task)).content.decode()

    assert "Cannot be scheduled: crontab" in page and "Bad day-of-month" in page


def test_the_change_page_says_a_paused_schedule_runs_at_these_times_once_enabled(staff_client):
    task = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)

    page = staff_client.get(change_url(task)).content.decode()

    assert "Paused: it runs at these times once enabled." in page
    assert f"{next_local_times(NEW_YORK, time(4), 1)[0]:%a %Y-%m-%d %H:%M %Z}" in page


def test_the_change_page_shows_the_last_run_and_links_to_this_schedules_runs(staff_client):
    task = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)
    ledger_run(task, datetime(2031, 1, 6, 9, tzinfo=UTC), took=4)
    other = interval_task("Heartbeat", TEN_MINUTES)
    ledger_run(other, datetime(2031, 1, 6, 9, tzinfo=UTC), took=1, worker="celery@elsewhere")

    page = staff_client.get(change_url(task)).content.decode()
    assert "Last run, for 2031-01-06 04:00 EST:" in page and "Succeeded" in page
    ledger = re.search(r'href="([^"]+)">All runs of this schedule in the run ledger', page).group(1)
    listed = staff_client.get(ledger.replace("&amp;", "&")).content.decode()
    assert "Morning report" in listed and "celery@elsewhere" not in listed


def schedule_change_form(task: PeriodicTask, **policy) -> dict:
    fields = {
        "name": task.name, "regtask": "", "task": task.task, "enabled": "on", "description": "",
        "interval": task.interval_id or "", "crontab": task.crontab_id or "", "solar": "", "clocked": "",
        "args": "[]", "kwargs": "{}", "priority": "", "queue": "", "exchange": "", "routing_key": "",
        "headers": "{}", "expire_seconds": "",
        "scheduler_policy-TOTAL_FORMS": "1", "scheduler_policy-INITIAL_FORMS": "0",
        # The alerts inline (monitoring), left empty.
        "alert_settings-TOTAL_FORMS": "0", "alert_settings-INITIAL_FORMS": "0",
        "scheduler_policy-MIN_NUM_FORMS": "0", "scheduler_policy-MAX_NUM_FORMS": "1",
        "scheduler_policy-0-task": task.pk,
    }
    defaults = {"missed_runs": "once", "catch_up_limit": "3", "starting_deadline_seconds": "60", "overlap": "allow"}
    fields.update({f"scheduler_policy-0-{name}": value for name, value in {**defaults, **policy}.items()})
    return fields


def test_the_change_page_shows_the_policy_with_its_defaults_and_help(staff_client):
    task = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)

    page = staff_client.get(change_url(task)).content.decode()

    assert "Missed and overlapping runs" in page
    assert 'name="scheduler_policy-0-starting_deadline_seconds" value="60"' in page
    assert "A run not sent within this many seconds of its slot counts as missed." in page
    assert "What a run does when it is due while the previous run of this schedule still runs." in page


def test_the_policy_inline_saves_the_schedules_policy(staff_client):
    task = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)

    response = staff_client.post(change_url(task), schedule_change_form(
        task, missed_runs="each", catch_up_limit="7", starting_deadline_seconds="300", overlap="skip"))

    assert response.status_code == 302
    policy = SchedulePolicy.objects.get(task=task)
    assert (policy.missed_runs, policy.catch_up_limit, policy.starting_deadline_seconds, policy.overlap) == (
        "each", 7, 300, "skip")


def test_saving_a_schedule_without_touching_the_policy_keeps_the_defaults_without_a_row(staff_client):
    task = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)

    assert staff_client.post(change_url(task), schedule_change_form(task)).status_code == 302
    assert not SchedulePolicy.objects.filter(task=task).exists()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("catch_up_limit", "-1", "Catch-up limit: enter a whole number of 0 or more."),
    ("catch_up_limit", "", "Catch-up limit: enter a whole number of 0 or more."),
    ("starting_deadline_seconds", "", "Starting deadline: enter a whole number of 5 or more."),
    ("starting_deadline_seconds", "0", "Starting deadline: at least 5 seconds."),
])
def test_the_policy_inline_refuses_a_bad_value_naming_the_field(staff_client, field, value, message):
    task = crontab_task("Morning report", FOUR_AM, zone=NEW_YORK.key)
    with_policy(task, catch_up_limit=2)
    form = schedule_change_form(task, **{field: value}, missed_runs="each")
    form["scheduler_policy-INITIAL_FORMS"] = "1"

    response = staff_client.post(change_url(task), form)

    assert response.status_code == 200
    page = response.content.decode()
    field_row = page.split(f"field-{field}")[1].split('class="form-row')[0]
    assert message in field_row
    assert SchedulePolicy.objects.get(task=task).missed_runs == "once"


def test_the_change_page_says_an_expired_schedule_has_no_further_runs(staff_client):
    task = crontab_task("Morning report", FOUR_AM)
    PeriodicTask.objects.filter(pk=task.pk).update(expires=datetime(2025, 1, 1, tzinfo=UTC))

    page = staff_client.get(change_url(task)).content.decode()

    assert "No further runs: the schedule expired at 2025-01-01 00:00 UTC." in page


def test_the_form_refuses_arguments_beat_could_not_send(staff_client):
    task = interval_task("Nightly export", TEN_MINUTES)
    page = staff_client.get(change_url(task))
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and not hasattr(value, "pk")}
    data.update({
        "name": task.name, "task": task.task, "interval": task.interval_id, "enabled": "on",
        "args": '{"day": 1}', "kwargs": "{}", "headers": "not json",
        "scheduler_policy-TOTAL_FORMS": "1", "scheduler_policy-INITIAL_FORMS": "0",
        # The alerts inline (monitoring), left empty.
        "alert_settings-TOTAL_FORMS": "0", "alert_settings-INITIAL_FORMS": "0",
        "scheduler_policy-MIN_NUM_FORMS": "0", "scheduler_policy-MAX_NUM_FORMS": "1",
        "scheduler_policy-0-missed_runs": "once", "scheduler_policy-0-catch_up_limit": "3",
        "scheduler_policy-0-starting_deadline_seconds": "60", "scheduler_policy-0-overlap": "allow",
    })
    response = staff_client.post(change_url(task), data)
    errors = response.context["adminform"].form.errors
    assert errors["args"] == ["Args must be a JSON list, not dict."]
    assert errors["headers"][0].startswith("Headers is not valid JSON")
    task.refresh_from_db()
    assert task.args == "[]"


@pytest.mark.parametrize(("field", "value", "words"), [
    ("headers", '{"id": "another-runs-id", "x-team": "ops"}', "Headers may not set &#x27;id&#x27;"),
    ("headers", '{"task": "cleanup.tasks.retention_sweep_all"}', "Headers may not set &#x27;task&#x27;"),
    ("exchange", "celeryev", "Exchange &#x27;celeryev&#x27; is not one the workers read"),
    ("routing_key", "worker.heartbeat", "Routing key &#x27;worker.heartbeat&#x27; is not one the workers read"),
    ("queue", "nobody-reads-this", "Queue &#x27;nobody-reads-this&#x27; is not one the workers read"),
    ("task", "celery.chord_unlock", "one of Celery&#x27;s internal tasks"),
])
def test_a_message_beat_must_not_send_is_refused_in_the_form_naming_the_field(staff_client, field, value, words):
    task = interval_task("Hourly", timedelta(hours=1))
    form = {**schedule_change_form(task), field: value}
    page = staff_client.post(change_url(task), form).content.decode()
    assert words in page and 'class="errorlist' in page
    task.refresh_from_db()
    assert getattr(task, field) != value


def test_beat_records_a_bad_message_written_past_the_form_as_not_enqueued_and_sends_nothing():
    from scheduler.claim import due_runs_claim

    task = interval_task("Planted", timedelta(minutes=1), exchange="celeryev", routing_key="worker.heartbeat",
                         headers='{"id": "x"}')
    now = timezone.now()
    schedules_sync(now=now - timedelta(minutes=2))
    dispatches, _ = due_runs_claim(now=now, node="beat-1")
    assert dispatches == []
    runs = ScheduleRun.objects.filter(schedule=task)
    assert not runs.exclude(status__in=["not_enqueued", "missed"]).exists()
    run = runs.get(status="not_enqueued")
    assert "celeryev" in run.reason and "'id'" in run.reason


def test_an_interval_shorter_than_the_minimum_period_is_refused_in_the_form_and_by_beat(staff_client):
    tiny = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MICROSECONDS)
    task = interval_task("Hourly", timedelta(hours=1))
    page = staff_client.post(change_url(task), {**schedule_change_form(task), "interval": tiny.pk}).content.decode()
    assert "shorter than the shortest period allowed, 1 s (MIN_SCHEDULE_PERIOD_SECONDS)" in page
    PeriodicTask.objects.filter(pk=task.pk).update(interval=tiny)
    schedules_sync(now=timezone.now())
    assert "shorter than the shortest period allowed" in ScheduleState.objects.get(task=task).problem


INTERVAL_ADD_URL = "/admin/django_celery_beat/intervalschedule/add/"
# The stock page's inline of the schedules on the interval, empty on a new one.
USED_BY_NONE = {"periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0"}


@pytest.mark.parametrize("every, period, shown", [
    ("999999999999", "days", "999,999,999,999 days"),  # past what Python's timedelta holds
    ("2000000000", "hours", "2,000,000,000 hours"),  # a timedelta, but past the last date Python has
])
def test_an_interval_longer_than_a_century_is_refused_naming_its_field(staff_client, every, period, shown):
    response = staff_client.post(INTERVAL_ADD_URL, {"every": every, "period": period, **USED_BY_NONE})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["every"] == [
        f"Number of Periods: {shown} is more than a century, the longest interval allowed; for a run that far "
        "ahead use a clocked schedule."
    ]
    assert not IntervalSchedule.objects.exists()


def test_an_interval_of_a_century_is_accepted(staff_client):
    response = staff_client.post(INTERVAL_ADD_URL, {"every": "36525", "period": "days", **USED_BY_NONE})
    assert response.status_code == 302
    assert IntervalSchedule.objects.get().every == 36525


def test_a_schedule_cannot_be_put_on_an_overlong_interval_written_past_its_form(staff_client):
    endless = IntervalSchedule.objects.create(every=2_000_000_000, period=IntervalSchedule.DAYS)
    task = interval_task("Hourly", timedelta(hours=1))
    response = staff_client.post(change_url(task), {**schedule_change_form(task), "interval": endless.pk})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["interval"] == [
        "2,000,000,000 days is more than a century, the longest interval allowed; for a run that far ahead use a "
        "clocked schedule."
    ]
    assert PeriodicTask.objects.get(pk=task.pk).interval_id != endless.pk


@pytest.mark.parametrize("every, period", [(2_000_000_000, IntervalSchedule.DAYS),
                                            (2_000_000_000, IntervalSchedule.HOURS)])
def test_a_schedule_already_on_an_overlong_interval_shows_its_page_and_beat_says_why(staff_client, every, period):
    endless = IntervalSchedule.objects.create(every=every, period=period)
    task = interval_task("Hourly", timedelta(hours=1))
    PeriodicTask.objects.filter(pk=task.pk).update(interval=endless)  # past the form

    assert staff_client.get(change_url(task)).status_code == 200
    assert staff_client.get("/admin/django_celery_beat/periodictask/").status_code == 200
    schedules_sync(now=timezone.now())
    assert "is more than a century" in ScheduleState.objects.get(task=task).problem


def test_view_only_staff_cannot_enable_disable_toggle_or_run_schedules(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_periodictask"))
    client.force_login(viewer)
    task = interval_task("Hourly", timedelta(hours=1), enabled=True)
    page = client.get("/admin/django_celery_beat/periodictask/").content.decode()
    for action in ("enable_tasks", "disable_tasks", "toggle_tasks", "run_now"):
        assert f'value="{action}"' not in page
        client.post("/admin/django_celery_beat/periodictask/", {"action": action, "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.enabled and not ScheduleRun.objects.exists()
