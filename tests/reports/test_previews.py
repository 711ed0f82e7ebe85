"""Previews: the page starts a build in a worker and waits for it, shows the email as built, and
says so when no worker answers; only whoever asked sees it. The worker's side runs here in the
test's process (reports.previews.preview_build, what the task calls); tests/e2e/test_report_preview.py
runs it in a real worker."""

import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from reports.models import ReportPreview, ReportRun
from reports.previews import PREVIEW_MARGIN_SECONDS, preview_build
from scheduler.messages import message_problems, task_schedulable
from tests.reports.conftest import chart_section, report_with

pytestmark = pytest.mark.django_db

PREVIEW_TASK = "reports.tasks.report_preview_build"


def preview_started(client, report, captured, day: str = "2026-03-02"):
    """Open Preview now; return the page it sends the browser to, and the preview."""
    with captured() as callbacks:
        response = client.get(reverse("admin:reports_report_preview", args=[report.pk]), {"date": day})
    assert response.status_code == 302, response.content
    return response["Location"], ReportPreview.objects.get(), callbacks


def test_preview_is_built_by_a_worker_and_shown_in_the_browser_without_sending_anything(
    staff_client, django_capture_on_commit_callbacks
):
    report = report_with(summary=True, sql=[chart_section()])
    url, preview, callbacks = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    assert len(callbacks) == 1, "handed to a worker once the preview row is committed"
    assert url == reverse("admin:reports_report_preview_page", args=[report.pk, preview.pk])
    assert (preview.status, str(preview.day), preview.time_limit_seconds) == ("waiting", "2026-03-02",
                                                                               30 + PREVIEW_MARGIN_SECONDS)

    waiting = staff_client.get(url)
    assert waiting.status_code == 202
    assert '<meta http-equiv="refresh" content="2">' in waiting.content.decode()
    assert "Waiting for a worker since" in waiting.content.decode()
    assert waiting["Content-Security-Policy"] == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

    preview_build(preview_id=preview.pk)
    response = staff_client.get(url)
    page = response.content.decode()
    assert response.status_code == 200 and "Visits per day" in page and "Runs by outcome" in page
    assert 'src="data:image/png;base64,' in page and "cid:" not in page and "http-equiv" not in page
    assert response["Content-Security-Policy"] == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    assert mail.outbox == [] and not ReportRun.objects.exists()


def test_opening_preview_again_while_it_is_built_waits_for_the_same_build(
    staff_client, django_capture_on_commit_callbacks
):
    report = report_with(summary=True)
    url, preview, _ = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    again, same, callbacks = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    assert (again, same, callbacks) == (url, preview, [])


def test_a_new_preview_replaces_the_finished_one_and_the_old_page_says_it_is_gone(
    staff_client, django_capture_on_commit_callbacks
):
    report = report_with(summary=True)
    url, preview, _ = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    preview_build(preview_id=preview.pk)
    with django_capture_on_commit_callbacks():
        staff_client.get(reverse("admin:reports_report_preview", args=[report.pk]), {"date": "2026-03-03"})
    assert [str(kept.day) for kept in ReportPreview.objects.all()] == ["2026-03-03"]
    response = staff_client.get(url)
    assert response.status_code == 404 and "a newer preview of the report replaced it" in response.content.decode()


def test_a_preview_no_worker_takes_says_so_after_a_minute_and_opening_it_again_sends_a_new_one(
    staff_client, django_capture_on_commit_callbacks
):
    report = report_with(summary=True)
    url, preview, _ = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    ReportPreview.objects.filter(pk=preview.pk).update(requested_at=timezone.now() - timedelta(seconds=61))

    response = staff_client.get(url)
    page = response.content.decode()
    assert response.status_code == 200 and "http-equiv" not in page
    assert "No worker took the preview within 60 seconds: is a worker reading the reports queue running?" in page

    again, new, callbacks = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    assert new.pk != preview.pk and len(callbacks) == 1


def test_a_build_that_outlives_its_time_limit_says_the_worker_stopped(staff_client, django_capture_on_commit_callbacks):
    report = report_with(summary=True, sql=[chart_section(timeout_seconds=5)])
    url, preview, _ = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    long_ago = timezone.now() - timedelta(seconds=preview.time_limit_seconds + 31)
    ReportPreview.objects.filter(pk=preview.pk).update(status="building", started_at=long_ago)

    page = staff_client.get(url).content.decode()
    assert "did not finish it within its time limit of 65 seconds" in page and "http-equiv" not in page


def test_a_preview_is_shown_only_to_the_staff_member_who_asked(
    staff_client, client, django_user_model, django_capture_on_commit_callbacks
):
    report = report_with(summary=True)
    url, preview, _ = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    preview_build(preview_id=preview.pk)
    client.force_login(django_user_model.objects.create_superuser("other", "other@example.com", "pw-for-tests"))
    response = client.get(url)
    assert response.status_code == 404 and "Runs by outcome" not in response.content.decode()


def test_a_preview_the_broker_does_not_take_says_so(staff_client, broker_at, django_capture_on_commit_callbacks):
    report = report_with(summary=True)
    with socket.socket() as refusing:  # bound, never listening
        refusing.bind(("127.0.0.1", 0))
        broker_at(f"redis://127.0.0.1:{refusing.getsockname()[1]}/0")
        url, _, _ = preview_started(staff_client, report, lambda: django_capture_on_commit_callbacks(execute=True))

    page = staff_client.get(url).content.decode()
    assert ("The preview could not be built: no worker could be asked to build it: the broker did not answer "
            "(Error 111 connecting") in page
    assert "http-equiv" not in page


def test_a_preview_message_delivered_twice_is_built_once(staff_client, django_capture_on_commit_callbacks):
    report = report_with(summary=True)
    _, preview, _ = preview_started(staff_client, report, django_capture_on_commit_callbacks)
    assert preview_build(preview_id=preview.pk).status == "ready"
    assert preview_build(preview_id=preview.pk) is None


def test_the_preview_task_is_neither_offered_nor_accepted_as_a_schedules_task():
    assert not task_schedulable(PREVIEW_TASK)
    problems = message_problems(args="[]", kwargs='{"preview_id": 1}', headers="{}", task=PREVIEW_TASK)
    assert problems["task"] == (f"{PREVIEW_TASK!r} is one of the product's internal tasks, not a job that may be "
                                "scheduled")


def test_previews_are_kept_a_day_by_their_retention_target():
    from cleanup.targets import retention_targets

    target = retention_targets()["report_previews"]
    assert (target.model_class, target.age_field, target.default_max_age_days) == (ReportPreview, "requested_at", 1)
