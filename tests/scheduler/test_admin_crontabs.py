"""The crontab editor: one cron expression field beside the five boxes, and no crontab saved
that can never fire."""

import re

import pytest
from django_celery_beat.models import CrontabSchedule

from tests.builders import crontab_of

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/django_celery_beat/crontabschedule/add/"
FIVE_BOXES = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def crontab_form(cron: str = "* * * * *", *, expression: str = "", zone: str = "UTC") -> dict:
    """The crontab form as posted: the five boxes from `cron`, the expression field as given."""
    return {
        **dict(zip(FIVE_BOXES, cron.split(), strict=True)), "cron_expression": expression, "timezone": zone,
        # The read-only list of schedules using the crontab.
        "periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0",
    }


def errors_of(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return response.context["adminform"].form.errors


def saved_crons() -> list[str]:
    return [" ".join(getattr(row, box) for box in FIVE_BOXES) for row in CrontabSchedule.objects.all()]


@pytest.mark.parametrize("cron", ["0 4 31 2 *", "30 2 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6 *", "0 12 31 2 mon"])
def test_a_crontab_that_can_never_fire_is_refused_naming_its_date_fields(staff_client, cron):
    response = staff_client.post(ADD_URL, crontab_form(cron))

    errors = errors_of(response)
    for box in ("day_of_month", "month_of_year"):
        assert errors[box][0].startswith("This crontab can never run: no date matches"), errors
    assert "minute" not in errors and "hour" not in errors
    assert saved_crons() == []


def test_the_29th_of_february_on_a_monday_is_accepted_because_it_comes_every_28_years_or_so(staff_client):
    response = staff_client.post(ADD_URL, crontab_form("0 12 29 2 mon"))

    assert response.status_code == 302
    assert saved_crons() == ["0 12 29 2 mon"]


def test_the_cron_expression_fills_the_five_boxes(staff_client):
    response = staff_client.post(ADD_URL, crontab_form(expression="30 2 * * 1-5", zone="Europe/Berlin"))

    assert response.status_code == 302
    row = CrontabSchedule.objects.get()
    assert (row.minute, row.hour, row.day_of_month, row.month_of_year, row.day_of_week) == ("30", "2", "*", "*", "1-5")
    assert str(row.timezone) == "Europe/Berlin"


@pytest.mark.parametrize(("alias", "cron"), [
    ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"), ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"),
])
def test_the_cron_expression_takes_crons_aliases(staff_client, alias, cron):
    assert staff_client.post(ADD_URL, crontab_form(expression=alias)).status_code == 302
    assert saved_crons() == [cron]


@pytest.mark.parametrize(("expression", "words"), [
    ("30 2 * *", "five fields"),
    ("30 2 * * 1-5 2031", "five fields"),
    ("@reboot", "@reboot"),
    ("61 2 * * *", "Minute 61"),
    ("30 2 * 13 *", "Month 13"),
])
def test_a_bad_cron_expression_is_refused_naming_the_field(staff_client, expression, words):
    errors = errors_of(staff_client.post(ADD_URL, crontab_form(expression=expression)))

    assert list(errors) == ["cron_expression"], errors
    assert words in errors["cron_expression"][0]
    assert saved_crons() == []


def test_a_cron_expression_that_can_never_fire_is_refused_naming_the_expression(staff_client):
    errors = errors_of(staff_client.post(ADD_URL, crontab_form(expression="0 4 31 2 *")))

    assert list(errors) == ["cron_expression"], errors
    assert errors["cron_expression"][0].startswith("This crontab can never run: no date matches")


def test_an_expression_and_boxes_that_say_different_things_are_refused_naming_the_expression(staff_client):
    errors = errors_of(staff_client.post(ADD_URL, crontab_form("0 4 * * *", expression="30 2 * * 1-5")))

    assert list(errors) == ["cron_expression"], errors
    assert "30 2 * * 1-5" in errors["cron_expression"][0] and "0 4 * * *" in errors["cron_expression"][0]
    assert saved_crons() == []


def test_an_expression_that_agrees_with_the_boxes_is_accepted(staff_client):
    assert staff_client.post(ADD_URL, crontab_form("30 2 * * 1-5", expression="30 2 * * 1-5")).status_code == 302
    assert saved_crons() == ["30 2 * * 1-5"]


def test_a_whole_expression_pasted_into_minute_is_refused_pointing_to_the_expression_field(staff_client):
    form = {**crontab_form(), "minute": "30 2 * * 1-5"}

    errors = errors_of(staff_client.post(ADD_URL, form))

    assert list(errors) == ["minute"], errors
    assert "Cron expression" in errors["minute"][0]
    assert saved_crons() == []


def test_the_change_page_shows_the_crontab_as_one_expression_and_edits_through_it(staff_client):
    crontab = crontab_of("30 2 * * 1-5")
    url = f"/admin/django_celery_beat/crontabschedule/{crontab.pk}/change/"

    page = staff_client.get(url).content.decode()
    assert re.search(r'name="cron_expression"[^>]*value="30 2 \* \* 1-5"', page), page

    response = staff_client.post(url, crontab_form("30 2 * * 1-5", expression="15 6 * * *"))
    assert response.status_code == 302
    assert saved_crons() == ["15 6 * * *"]

    response = staff_client.post(url, {**crontab_form("15 7 * * *", expression="15 6 * * *")})
    assert response.status_code == 302, "editing the boxes alone, the unchanged expression gives way"
    assert saved_crons() == ["15 7 * * *"]
