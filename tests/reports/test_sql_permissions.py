"""Who may have a report's SQL run (reports.permissions, issue 13.9): a preview of a report with
SQL sections, and a change of who receives it, need a superuser, as writing the sections does;
reports without SQL sections keep the admin's usual permissions. Each for each role."""

import pytest
import redis
from django.contrib.auth.models import Permission
from django.urls import reverse

from reports.models import Report, ReportPreview
from scheduler.models import ScheduleRun
from tests.reports.conftest import chart_section, report_with
from tests.reports.test_admin import report_form

pytestmark = pytest.mark.django_db

SUPERUSER, CHANGE_ONLY, VIEW_ONLY = "superuser", "change-only staff", "view-only staff"


@pytest.fixture
def client_as(client, django_user_model):
    def log_in(role: str, *other_codenames: str):
        if role == SUPERUSER:
            user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests")
        else:
            user = django_user_model.objects.create_user("ops", "ops@example.com", "pw-for-tests", is_staff=True)
            permissions = Permission.objects.filter(content_type__app_label="reports")
            if role == VIEW_ONLY:
                permissions = permissions.filter(codename__startswith="view_")
            user.user_permissions.set([*permissions, *Permission.objects.filter(codename__in=other_codenames)])
        client.force_login(user)
        return client
    return log_in


def sql_report() -> Report:
    return report_with(name="Sales", recipients="ana@example.com", sql=[chart_section()])


def summary_report() -> Report:
    return report_with(name="Sales", recipients="ana@example.com", summary=True)


def preview(client, report: Report):
    return client.get(reverse("admin:reports_report_preview", args=[report.pk]), {"date": "2026-03-02"})


@pytest.mark.parametrize("role, allowed", [(SUPERUSER, True), (CHANGE_ONLY, False), (VIEW_ONLY, False)])
def test_a_report_with_sql_sections_is_previewed_only_by_a_superuser(client_as, role, allowed):
    client, report = client_as(role), sql_report()
    assert preview(client, report).status_code == (302 if allowed else 403)
    assert ReportPreview.objects.exists() == allowed
    page = client.get(reverse("admin:reports_report_change", args=[report.pk])).content.decode()
    assert ("Preview now" in page) == allowed


@pytest.mark.parametrize("role", [SUPERUSER, CHANGE_ONLY, VIEW_ONLY])
def test_a_report_without_sql_sections_is_previewed_by_anyone_who_may_view_it(client_as, role):
    client, report = client_as(role), summary_report()
    assert preview(client, report).status_code == 302
    assert "Preview now" in client.get(reverse("admin:reports_report_change", args=[report.pk])).content.decode()


def test_the_page_of_a_preview_refuses_who_may_no_longer_run_its_sql(client_as, django_capture_on_commit_callbacks):
    client, report = client_as(CHANGE_ONLY), summary_report()
    with django_capture_on_commit_callbacks():
        url = preview(client, report)["Location"]
    report_with(name="Other", sql=[chart_section()]).sections.update(report=report)
    assert client.get(url).status_code == 403


def change_recipients(client, report: Report, recipients: str, **fields):
    return client.post(reverse("admin:reports_report_change", args=[report.pk]),
                       report_form(name=report.name, recipients=recipients, **fields))


@pytest.mark.parametrize("role, outcome", [(SUPERUSER, 302), (CHANGE_ONLY, 200), (VIEW_ONLY, 403)])
def test_the_recipients_of_a_report_with_sql_sections_are_changed_only_by_a_superuser(client_as, role, outcome):
    client, report = client_as(role), sql_report()
    response = change_recipients(client, report, "ana@example.com, eve@example.com")
    assert response.status_code == outcome
    if outcome == 200:
        assert response.context["adminform"].form.errors["recipients"] == [
            "Only superusers may change the recipients of a report that has SQL sections."]
    expected = "ana@example.com, eve@example.com" if role == SUPERUSER else "ana@example.com"
    assert Report.objects.get(pk=report.pk).recipients == expected


def test_staff_with_change_permission_still_edit_the_rest_of_a_report_with_sql_sections(client_as):
    client, report = client_as(CHANGE_ONLY), sql_report()
    # The same addresses written another way are no change of who receives it.
    response = change_recipients(client, report, "ana@example.com\n", description="for the sales team")
    assert response.status_code == 302
    assert Report.objects.get(pk=report.pk).description == "for the sales team"


@pytest.mark.parametrize("role, outcome", [(SUPERUSER, 302), (CHANGE_ONLY, 302), (VIEW_ONLY, 403)])
def test_the_recipients_of_a_report_without_sql_sections_follow_the_change_permission(client_as, role, outcome):
    client, report = client_as(role), summary_report()
    assert change_recipients(client, report, "eve@example.com").status_code == outcome
    assert (Report.objects.get(pk=report.pk).recipients == "eve@example.com") == (outcome == 302)


@pytest.fixture
def reports_queue(app_publishing_to_test_redis, redis_url):
    """The reports queue of the test's Redis, which "Run now" publishes to, emptied after the test."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.delete("reports")
    client.close()


def run_now(client, report: Report):
    return client.post(reverse("admin:django_celery_beat_periodictask_changelist"),
                       {"action": "run_now", "_selected_action": [report.schedule_id]}, follow=True)


def test_run_now_on_the_schedule_of_a_report_without_sql_sections_follows_the_schedules_permissions(
    client_as, reports_queue
):
    client, report = client_as(CHANGE_ONLY, "view_periodictask", "change_periodictask"), summary_report()
    run_now(client, report)
    assert ScheduleRun.objects.filter(schedule=report.schedule_id, kind="manual").exists()


@pytest.mark.parametrize("role, allowed", [(SUPERUSER, True), (CHANGE_ONLY, False)])
def test_run_now_on_the_schedule_of_a_report_with_sql_sections_is_for_a_superuser(
    client_as, reports_queue, role, allowed
):
    # Staff who may change schedules, and so run them now.
    client = client_as(role, "view_periodictask", "change_periodictask")
    report = sql_report()
    said = [str(message) for message in run_now(client, report).context["messages"]]
    if allowed:
        assert ScheduleRun.objects.filter(schedule=report.schedule_id, kind="manual").exists()
        assert reports_queue.llen("reports") == 1
        assert "Queued for the workers now: Report: Sales." in said[0]
    else:
        assert said == ["Nothing was run. 'Report: Sales': Only superusers may run a report that has SQL sections."]
        assert not ScheduleRun.objects.exists() and reports_queue.llen("reports") == 0
