import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cleanup.models import CleanupRun, RetentionPolicy
from cleanup.services import retention_policies_seed

pytestmark = pytest.mark.django_db


def test_policies_are_seeded_with_their_targets_defaults_and_kept_when_seeded_again():
    assert dict(retention_policies_seed()) == {
        "sessions": True, "task_results": True, "cleanup_runs": True, "worker_heartbeats": True,
        "schedule_runs": True, "report_runs": True, "report_previews": True, "scraping_snapshots": True,
        "scraping_fetches": True,
        "beat_heartbeats": True, "alert_flips": True, "evaluator_heartbeats": True, "ledger_hours": True,
        "login_attempts": True, "login_log": True,
    }
    RetentionPolicy.objects.filter(target="task_results").update(max_age_days=7, enabled=False)
    assert not any(created for _, created in retention_policies_seed())
    results = RetentionPolicy.objects.get(target="task_results")
    assert (results.max_age_days, results.keep_last, results.enabled) == (7, 10, False)


@pytest.mark.parametrize("fields, field_in_error", [
    ({"target": "nope"}, "__all__"),
    ({"target": "task_results", "max_age_days": -3}, "max_age_days"),
    ({"target": "task_results", "batch_size": 0}, "batch_size"),
    ({"target": "sessions", "max_age_days": 10}, "max_age_days"),
])
def test_a_bad_policy_is_refused_naming_the_field(fields, field_in_error):
    with pytest.raises(ValidationError) as refused:
        RetentionPolicy(**fields).full_clean()
    assert field_in_error in refused.value.message_dict


def save_in_admin(client, policy: RetentionPolicy, **fields):
    form = {"enabled": "on", "max_age_days": "", "keep_last": "", "batch_size": "2000", "batch_target_ms": "50",
            "time_budget_seconds": "300", **fields}
    return client.post(f"/admin/cleanup/retentionpolicy/{policy.pk}/change/", form)


def test_the_admin_refuses_a_zero_batch_size_and_keeps_the_stored_policy(staff_client):
    retention_policies_seed()
    stored = RetentionPolicy.objects.get(target="sessions")
    response = save_in_admin(staff_client, stored, batch_size="0")
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    stored.refresh_from_db()
    assert stored.batch_size == 2000


def test_the_admin_lists_policies_with_what_they_remove_and_their_last_run(staff_client):
    retention_policies_seed()
    CleanupRun.objects.create(target="sessions", trigger="schedule", status="succeeded", rows_deleted=321,
                              started_at=timezone.now(), finished_at=timezone.now())
    # A later run that found the target taken by that one: not what the policy last did.
    CleanupRun.objects.create(target="sessions", trigger="command", status="skipped", rows_deleted=0,
                              error="another run is cleaning sessions", started_at=timezone.now(),
                              finished_at=timezone.now())
    page = staff_client.get("/admin/cleanup/retentionpolicy/").content.decode()
    assert "Django sessions past their expiry date" in page and "task_results" in page
    assert "Succeeded: 321 deleted" in page and "Skipped: 0 deleted" not in page


def test_editing_the_policy_of_a_target_no_longer_declared_says_why_instead_of_crashing(staff_client):
    orphan = RetentionPolicy.objects.create(target="retired_app_rows")
    response = save_in_admin(staff_client, orphan, enabled="")
    assert response.status_code == 200
    assert "Unknown retention target &#x27;retired_app_rows&#x27;" in response.content.decode()


def test_only_the_policy_of_a_target_no_longer_declared_can_be_deleted(staff_client):
    retention_policies_seed()
    sessions = RetentionPolicy.objects.get(target="sessions")
    orphan = RetentionPolicy.objects.create(target="retired_app_rows")
    refused = staff_client.post(f"/admin/cleanup/retentionpolicy/{sessions.pk}/delete/", {"post": "yes"})
    assert refused.status_code == 403
    staff_client.post(f"/admin/cleanup/retentionpolicy/{orphan.pk}/delete/", {"post": "yes"})
    assert not RetentionPolicy.objects.filter(target="retired_app_rows").exists()
    assert RetentionPolicy.objects.filter(target="sessions").exists()
