from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cleanup.models import CleanupRun
from cleanup.tasks import purge_expired_sessions, retention_sweep_all
from shared.display import moment
from tests.cleanup import factories
from tests.conftest import run_manage, subprocess_env


@pytest.mark.django_db
def test_it_cleans_the_named_targets_and_prints_a_summary():
    factories.sessions(30, expires_in=-timedelta(minutes=1))
    out = StringIO()
    call_command("cleanup", "sessions", stdout=out, stderr=StringIO())
    summary = out.getvalue().splitlines()
    assert summary[0].split()[:4] == ["target", "status", "matched", "deleted"]
    assert summary[1].split()[:4] == ["sessions", "Succeeded", "30", "30"]
    assert CleanupRun.objects.get().trigger == "command"


@pytest.mark.django_db
def test_a_dry_run_says_what_would_go():
    factories.sessions(4, expires_in=-timedelta(minutes=1))
    out = StringIO()
    call_command("cleanup", "--dry-run", stdout=out, stderr=StringIO())
    assert "would delete" in out.getvalue()
    assert "sessions             Succeeded                   4            4" in out.getvalue()


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.django_db
def test_its_progress_bar_counts_the_rows_first_on_a_terminal_only():
    factories.sessions(6, expires_in=-timedelta(minutes=1))
    terminal = Terminal()
    with CaptureQueriesContext(connection) as on_a_terminal:
        call_command("cleanup", "sessions", "--dry-run", stdout=StringIO(), stderr=terminal)
    with CaptureQueriesContext(connection) as in_a_log:
        call_command("cleanup", "sessions", "--dry-run", stdout=StringIO(), stderr=StringIO())

    def counts(queries):
        return [q["sql"] for q in queries if "COUNT(*)" in q["sql"] and "django_session" in q["sql"]]

    # The same run both times (a dry run on PostgreSQL counts its batches), with the bar's total
    # counted first on a terminal only.
    assert "6/6" in terminal.getvalue()
    assert len(counts(on_a_terminal)) == len(counts(in_a_log)) + 1


def test_an_unknown_target_is_refused_with_the_known_ones_and_a_nonzero_status(tmp_path):
    result = run_manage("cleanup", "sesions", env=subprocess_env(DATA_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert "Unknown target 'sesions'; known targets:" in result.stderr and "sessions" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_failing_target_fails_the_command_and_the_task_but_the_others_still_run():
    factories.sessions(3, expires_in=-timedelta(minutes=1))
    factories.task_results(2, schedule="x", age=timedelta(days=90))
    # A real database failure: the results table is missing while the cleanup runs.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE django_celery_results_taskresult RENAME TO taskresult_away")
    try:
        with pytest.raises(CommandError, match="cleanup failed for: task_results"):
            call_command("cleanup", stdout=StringIO(), stderr=StringIO())
        failed = CleanupRun.objects.get(target="task_results")
        assert failed.status == "failed" and failed.error
        assert CleanupRun.objects.get(target="sessions").rows_deleted == 3
        with pytest.raises(RuntimeError, match="cleanup failed for task_results"):
            retention_sweep_all.apply(throw=True)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE taskresult_away RENAME TO django_celery_results_taskresult")


@pytest.mark.django_db
def test_the_hourly_task_cleans_sessions_only():
    factories.sessions(3, expires_in=-timedelta(minutes=1))
    assert purge_expired_sessions.apply().get() == {"sessions": {"status": "succeeded", "deleted": 3}}
    assert list(CleanupRun.objects.values_list("target", "trigger")) == [("sessions", "schedule")]


@pytest.mark.django_db
def test_the_runs_page_shows_runs_and_trends(staff_client):
    CleanupRun.objects.create(target="sessions", trigger="schedule", status="succeeded", rows_deleted=1234,
                              started_at=timezone.now(), finished_at=timezone.now())
    page = staff_client.get("/admin/cleanup/cleanuprun/").content.decode()
    assert 'id="cleanup-trends"' in page and "1234" in page


@pytest.mark.django_db
def test_the_runs_list_gives_each_start_to_the_second_and_a_skips_reason_as_a_reason(staff_client):
    started = timezone.now().replace(microsecond=0)
    for seconds in (5, 42):  # two runs in one minute
        CleanupRun.objects.create(target="sessions", trigger="command", status="skipped",
                                  error="another run is cleaning sessions", started_at=started.replace(second=seconds),
                                  finished_at=started.replace(second=seconds))
    page = staff_client.get("/admin/cleanup/cleanuprun/").content.decode()
    for seconds in (5, 42):
        assert moment(started.replace(second=seconds)) in page
    assert "Error, or why skipped" in page and "another run is cleaning sessions" in page


@pytest.mark.django_db
def test_a_run_now_of_a_cleanup_schedule_is_recorded_as_run_now_and_beats_slot_as_schedule():
    from scheduler.messages import dispatch_for, run_headers
    from scheduler.services import run_here_now
    from tests import builders

    schedule = builders.interval_task("Session cleanup", timedelta(hours=1),
                                      task="cleanup.tasks.purge_expired_sessions")
    factories.sessions(2, expires_in=-timedelta(minutes=1))
    manual = run_here_now(schedule=schedule, task=purge_expired_sessions, node="test-node")
    factories.sessions(3, expires_in=-timedelta(minutes=1))
    slot = builders.ledger_run(schedule, status="sent")
    purge_expired_sessions.apply(task_id=slot.task_id, headers=run_headers(dispatch_for(slot, schedule)))

    slot.refresh_from_db()
    assert (manual.kind, manual.status, slot.kind, slot.status) == ("manual", "succeeded", "scheduled", "succeeded")
    assert list(CleanupRun.objects.order_by("id").values_list("trigger", "rows_deleted")) == [
        ("manual", 2), ("schedule", 3)]
