"""Reports in the admin: definitions, their schedules, SQL sections for superusers only, review."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from reports.admin import SqlSectionForm
from reports.models import Report, ReportDelivery, ReportSection
from reports.services import report_deliver
from tests.reports.conftest import COUNTS_BY_DAY, chart_section, report_with

pytestmark = pytest.mark.django_db

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def report_form(**fields) -> dict:
    data = {
        "name": "Sales", "description": "", "recipients": "ana@example.com", "enabled": "on",
        "send_at": "06:30", "days_of_week": "mon-fri", "timezone": "Europe/Berlin", "covered_period": "previous_day",
    }
    for prefix in ("operations_summary_sections", "sql_sections"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0",
                     f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
    data.update(fields)
    return data


def sql_section_form(query: str = COUNTS_BY_DAY) -> dict:
    return {"sql_sections-TOTAL_FORMS": "1", "sql_sections-0-position": "1", "sql_sections-0-name": "Per day",
            "sql_sections-0-data_source": "default", "sql_sections-0-query": query,
            "sql_sections-0-timeout_seconds": "30", "sql_sections-0-row_limit": "1000",
            "sql_sections-0-chart": "none", "sql_sections-0-chart_x": "", "sql_sections-0-chart_y": ""}


@pytest.fixture
def ops_client(client, django_user_model):
    """A staff member who may manage reports but is not a superuser."""
    user = django_user_model.objects.create_user("ops", "ops@example.com", "pw-for-tests", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="reports"))
    client.force_login(user)
    return client


def test_saving_a_report_creates_its_schedule_in_its_timezone_and_links_both_ways(staff_client):
    response = staff_client.post(reverse("admin:reports_report_add"), report_form())
    assert response.status_code == 302, response.context["adminform"].errors
    report = Report.objects.get(name="Sales")
    schedule = report.schedule
    assert schedule.name == "Report: Sales" and schedule.task == "reports.tasks.report_send" and schedule.enabled
    crontab = schedule.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "30", "6", "mon-fri", "Europe/Berlin")
    assert schedule.kwargs == f'{{"report_id": {report.pk}}}'

    page = staff_client.get(reverse("admin:reports_report_change", args=[report.pk])).content.decode()
    assert reverse("admin:django_celery_beat_periodictask_change", args=[schedule.pk]) in page
    assert "Preview now" in page
    assert "Reports › Reports" in schedule.description


def test_editing_the_report_updates_the_same_schedule(staff_client):
    staff_client.post(reverse("admin:reports_report_add"), report_form())
    report = Report.objects.get(name="Sales")
    staff_client.post(reverse("admin:reports_report_change", args=[report.pk]),
                      report_form(name="Sales daily", send_at="08:15", recipients=""))
    report.refresh_from_db()
    schedule = PeriodicTask.objects.get(pk=report.schedule_id)
    assert schedule.name == "Report: Sales daily" and (schedule.crontab.hour, schedule.crontab.minute) == ("8", "15")
    assert not schedule.enabled, "no recipients: nothing to send"
    assert PeriodicTask.objects.filter(task="reports.tasks.report_send").count() == 1


def test_a_bad_address_is_refused_naming_it_and_nothing_is_saved(staff_client):
    response = staff_client.post(reverse("admin:reports_report_add"),
                                 report_form(recipients="ana@example.com, bob@"))
    assert response.status_code == 200
    assert "&#x27;bob@&#x27; is not a valid email address." in response.content.decode()
    assert not Report.objects.filter(name="Sales").exists()


@pytest.mark.parametrize("field, value, message", [
    ("timezone", "Mars/Olympus", "is not a timezone name"),
    ("days_of_week", "someday", "is not a cron day-of-week field"),
])
def test_other_bad_fields_are_refused_naming_the_field(staff_client, field, value, message):
    response = staff_client.post(reverse("admin:reports_report_add"), report_form(**{field: value}))
    assert message in response.content.decode() and not Report.objects.filter(name="Sales").exists()


@pytest.mark.parametrize("name, character", [
    ("Sales\r\nBcc: eve@example.com", "U+000D"), ("Sales\nweekly", "U+000A"), ("Sales\x1b[2J", "U+001B"),
    ("Sales\u2028today", "U+2028"),
])
def test_a_report_name_that_is_not_one_line_is_refused_naming_the_field(staff_client, name, character):
    response = staff_client.post(reverse("admin:reports_report_add"), report_form(name=name))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == [
        "The name is the subject of the report's email: it must be one line, without line breaks or other "
        f"control characters (it holds {character})."
    ]
    assert not Report.objects.exists()


def test_the_period_covered_is_chosen_on_the_reports_page(staff_client):
    page = staff_client.get(reverse("admin:reports_report_add")).content.decode()
    assert '<option value="previous_day" selected>The previous day</option>' in page
    assert "The previous week (Monday to Sunday)" in page and "counted back from the time it is due" in page

    response = staff_client.post(reverse("admin:reports_report_add"), report_form(covered_period="previous_week"))
    assert response.status_code == 302
    assert Report.objects.get(name="Sales").covered_period == Report.Period.PREVIOUS_WEEK


def test_an_unknown_period_is_refused_naming_it(staff_client):
    response = staff_client.post(reverse("admin:reports_report_add"), report_form(covered_period="fortnight"))
    assert "Select a valid choice. fortnight is not one of the available choices." in response.content.decode()
    assert not Report.objects.filter(name="Sales").exists()


def test_a_superuser_adds_a_sql_section(staff_client):
    response = staff_client.post(reverse("admin:reports_report_add"), report_form(**sql_section_form()))
    assert response.status_code == 302
    (section,) = Report.objects.get(name="Sales").sections.all()
    assert section.kind == ReportSection.Kind.SQL and section.query == COUNTS_BY_DAY


def test_the_data_source_help_reads_whole_on_the_page(staff_client):
    # The admin shows help texts as HTML: REPORT_SOURCE_<NAME>_URL read as REPORT_SOURCE__URL.
    page = staff_client.get(reverse("admin:reports_report_add")).content.decode()
    assert "REPORT_SOURCE_{NAME}_URL" in page and "REPORT_SOURCE__URL" not in page


def test_a_delete_in_a_sql_section_is_refused_by_the_form(staff_client):
    response = staff_client.post(reverse("admin:reports_report_add"),
                                 report_form(**sql_section_form("DELETE FROM auth_user")))
    assert "Only a SELECT query may run in a report; this one starts with DELETE" in response.content.decode()
    assert not Report.objects.filter(name="Sales").exists()


def test_staff_who_are_not_superusers_cannot_add_sql_sections(ops_client):
    response = ops_client.post(reverse("admin:reports_report_add"), report_form(**sql_section_form()))
    assert response.status_code == 302
    assert not ReportSection.objects.filter(kind=ReportSection.Kind.SQL).exists()


def test_the_sql_form_itself_refuses_a_user_who_is_not_a_superuser(django_user_model):
    from django.forms import modelform_factory

    fields = ["name", "query", "data_source", "timeout_seconds", "row_limit", "chart"]
    form_class = modelform_factory(ReportSection, form=SqlSectionForm, fields=fields)
    form_class.user = django_user_model(is_staff=True)
    form = form_class(data={"name": "x", "query": "SELECT 1", "data_source": "default", "timeout_seconds": 5,
                            "row_limit": 10, "chart": "none"})
    assert not form.is_valid()
    assert form.non_field_errors() == ["Only superusers may add or change SQL sections."]


def test_staff_see_existing_sql_sections_read_only(ops_client):
    report = report_with(sql=[chart_section()])
    page = ops_client.get(reverse("admin:reports_report_change", args=[report.pk])).content.decode()
    assert "Visits per day" in page and 'name="sql_sections-0-query"' not in page


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_preview_of_a_day_past_the_calendars_reach_says_so_naming_the_date(staff_client, day):
    report = report_with(summary=True)
    response = staff_client.get(reverse("admin:reports_report_preview", args=[report.pk]), {"date": day})
    assert response.status_code == 400
    assert response.content.decode() == f"date: {day} is more than a century from today; preview a day nearer to it."


def test_a_run_is_reviewed_with_its_email_files_and_deliveries(staff_client):
    report = report_with(sql=[chart_section()])
    run = report_deliver(report=report, slot=SLOT)

    page = staff_client.get(reverse("admin:reports_reportrun_change", args=[run.pk])).content.decode()
    assert "2026-03-02" in page or "March 2, 2026" in page
    assert "ana@example.com" in page and "bo@example.com" in page and "Sent" in page
    email_page = staff_client.get(reverse("admin:reports_reportrun_email", args=[run.pk])).content.decode()
    assert 'src="data:image/png;base64,' in email_page and "Visits per day" in email_page
    csv_file = run.files.get(kind="csv")
    download = staff_client.get(reverse("admin:reports_reportrun_file", args=[run.pk, csv_file.pk]))
    assert download["Content-Disposition"] == 'attachment; filename="01-visits-per-day.csv"'
    assert download.content.decode().splitlines()[1] == "mon,3"


def test_the_lists_show_reports_runs_and_deliveries(staff_client):
    run = report_deliver(report=report_with(sql=[chart_section()]), slot=SLOT)
    reports = staff_client.get(reverse("admin:reports_report_changelist")).content.decode()
    assert "Visits" in reports and "07:00 UTC, every day" in reports
    runs = staff_client.get(reverse("admin:reports_reportrun_changelist")).content.decode()
    assert "2 sent" in runs and "OK" in runs
    deliveries = staff_client.get(reverse("admin:reports_reportdelivery_changelist")).content.decode()
    assert "bo@example.com" in deliveries and str(run) in deliveries


def test_review_pages_are_for_staff_only(client, django_user_model):
    run = report_deliver(report=report_with(sql=[chart_section()]), slot=SLOT)
    for url in (reverse("admin:reports_reportrun_email", args=[run.pk]),
                reverse("admin:reports_report_preview", args=[run.report_id])):
        assert client.get(url).status_code == 302  # to the login page
    django_user_model.objects.create_user("visitor", password="pw-for-tests")
    client.login(username="visitor", password="pw-for-tests")
    assert client.get(reverse("admin:reports_reportrun_email", args=[run.pk])).status_code == 302


def test_resend_sends_one_recipient_one_more_copy(staff_client):
    run = report_deliver(report=report_with(sql=[chart_section()]), slot=SLOT)
    assert len(mail.outbox) == 2
    bo = run.deliveries.get(recipient="bo@example.com")
    response = staff_client.post(reverse("admin:reports_reportdelivery_changelist"),
                                 {"action": "resend", "_selected_action": [bo.pk]}, follow=True)
    assert "Sent Visits for 2026-03-02 to bo@example.com again." in response.content.decode()
    assert [message.to for message in mail.outbox[2:]] == [["bo@example.com"]]
    assert ReportDelivery.objects.get(pk=bo.pk).attempts == 2


def test_the_daily_operations_report_is_seeded_once_disabled_until_it_has_a_recipient(settings):
    from reports.services import reports_seed

    settings.TIME_ZONE = "Europe/Berlin"
    assert reports_seed() == [("Daily operations", True)]
    report = Report.objects.get(name="Daily operations")
    assert str(report.schedule.crontab.timezone) == report.timezone == "Europe/Berlin"
    assert [s.kind for s in report.sections.all()] == [ReportSection.Kind.OPERATIONS_SUMMARY]
    assert (report.send_at.hour, report.schedule.crontab.hour, report.schedule.enabled) == (7, "7", False)
    report.description = "ours now"
    report.save()
    assert reports_seed() == [("Daily operations", False)]
    assert Report.objects.get(name="Daily operations").description == "ours now"


def test_more_than_one_statement_in_a_sql_section_is_refused_by_the_form(staff_client):
    response = staff_client.post(reverse("admin:reports_report_add"),
                                 report_form(**sql_section_form("SELECT 1; DELETE FROM auth_user")))
    assert "exactly one SELECT statement; this query has 2 statements" in response.content.decode()
    assert not Report.objects.filter(name="Sales").exists()


def test_resend_needs_the_change_permission_on_deliveries(client, django_user_model):
    run = report_deliver(report=report_with(sql=[chart_section()]), slot=SLOT)
    bo = run.deliveries.get(recipient="bo@example.com")
    viewer = django_user_model.objects.create_user("viewer", password="pw-for-tests", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_reportdelivery"))
    client.force_login(viewer)
    url = reverse("admin:reports_reportdelivery_changelist")

    assert 'value="resend"' not in client.get(url).content.decode()
    client.post(url, {"action": "resend", "_selected_action": [bo.pk]}, follow=True)
    assert len(mail.outbox) == 2

    viewer.user_permissions.add(Permission.objects.get(codename="change_reportdelivery"))
    client.post(url, {"action": "resend", "_selected_action": [bo.pk]}, follow=True)
    assert [message.to for message in mail.outbox[2:]] == [["bo@example.com"]]


def test_a_failed_resend_keeps_a_sent_delivery_sent_and_says_why(staff_client, smtp_server):
    run = report_deliver(report=report_with(sql=[chart_section()]), slot=SLOT)
    bo = run.deliveries.get(recipient="bo@example.com")
    smtp_server.rcpt_replies = {"bo@example.com": ["550 5.1.1 No such user"]}

    response = staff_client.post(reverse("admin:reports_reportdelivery_changelist"),
                                 {"action": "resend", "_selected_action": [bo.pk]}, follow=True)

    page = response.content.decode()
    assert "Could not send Visits for 2026-03-02 to bo@example.com again: 550 5.1.1 No such user" in page
    assert "It stays marked sent" in page
    bo.refresh_from_db()
    assert (bo.status, bo.last_error, bo.attempts) == ("sent", "550 5.1.1 No such user", 2)


def test_a_stale_sending_delivery_shows_in_red_with_when_it_was_claimed(staff_client):
    run = report_deliver(report=report_with(sql=[chart_section()]), slot=SLOT)
    claimed = timezone.now() - timedelta(minutes=20)
    run.deliveries.filter(recipient="bo@example.com").update(status="sending", claimed_at=claimed,
                                                            claimed_until=claimed + timedelta(minutes=10))

    page = staff_client.get(reverse("admin:reports_reportrun_change", args=[run.pk])).content.decode()
    assert f"Sending since {claimed:%Y-%m-%d %H:%M} UTC: stale, will be sent again" in page
    assert 'style="color:#ba2121">Sending since' in page
