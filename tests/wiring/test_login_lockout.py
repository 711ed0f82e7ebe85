"""The admin's login form locks out a user name from an address after repeated failures."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cleanup.models import RetentionPolicy
from cleanup.services import retention_policy_for, target_purge
from cleanup.targets import retention_targets
from tests.conftest import run_manage, subprocess_env

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
ATTACKER, NEIGHBOUR = "203.0.113.7", "198.51.100.20"
PASSWORD = "the-right-one-42"


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True)


def log_in(client, username: str, password: str, *, address: str = ATTACKER):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def fail_until_locked_out(client, username: str, *, address: str = ATTACKER):
    for _ in range(4):
        assert log_in(client, username, "wrong", address=address).status_code == 200
    return log_in(client, username, "wrong", address=address)


def test_it_locks_out_a_user_name_from_an_address_and_refuses_even_the_right_password(client, operator):
    locked_out = fail_until_locked_out(client, "operator")
    assert locked_out.status_code == 429

    response = log_in(client, "operator", PASSWORD)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins for “operator” from your address" in page
    assert "Try again in 15 minutes" in page
    assert not logged_in(client)


def test_the_same_user_from_another_address_and_another_user_from_that_address_still_log_in(
    client, operator, django_user_model
):
    django_user_model.objects.create_user("auditor", password=PASSWORD, is_staff=True)
    fail_until_locked_out(client, "operator")

    assert log_in(client, "operator", PASSWORD, address=NEIGHBOUR).status_code == 302
    assert logged_in(client)
    client.logout()
    assert log_in(client, "auditor", PASSWORD).status_code == 302
    assert logged_in(client)


def test_a_superuser_sees_the_lockout_in_the_admin(client, operator, staff_client):
    fail_until_locked_out(client, "operator")

    page = staff_client.get("/admin/axes/accessattempt/?locked_out=yes").content.decode()

    assert "operator" in page and ATTACKER in page and "Locked Out" in page


def test_the_lockout_ends_after_its_cooloff(client, operator):
    from axes.models import AccessAttempt

    fail_until_locked_out(client, "operator")
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    assert log_in(client, "operator", PASSWORD).status_code == 302
    assert logged_in(client)


def test_cleanup_removes_old_login_attempts_and_keeps_a_live_lockout(client, operator):
    from axes.models import AccessAttempt

    fail_until_locked_out(client, "operator")
    # Axes itself drops attempts past their cool-off at each login; these are left when no one
    # logs in for a while.
    stale = AccessAttempt.objects.create(username="auditor", ip_address=NEIGHBOUR, failures_since_start=2)
    AccessAttempt.objects.filter(pk=stale.pk).update(attempt_time=timezone.now() - timedelta(days=3))
    target = retention_targets()["login_attempts"]
    policy = retention_policy_for(target=target)
    # Even a policy of "older than 0 days" may not lift a lockout that is still running.
    RetentionPolicy.objects.filter(pk=policy.pk).update(max_age_days=0)
    policy.refresh_from_db()

    run = target_purge(target=target, policy=policy, dry_run=False, trigger="command")

    assert (run.status, run.rows_deleted) == ("succeeded", 1)
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["operator"]
    assert log_in(client, "operator", PASSWORD).status_code == 429


@pytest.mark.parametrize("variable, value, message", [
    ("LOGIN_FAILURE_LIMIT", "0", "invalid value: must be a positive number"),
    ("LOGIN_LOCKOUT_MINUTES", "soon", "invalid value: Not a valid integer."),
])
def test_it_refuses_a_bad_lockout_setting_on_one_line(tmp_path, variable, value, message):
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(tmp_path), **{variable: value}))
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"configuration error: {variable}: {message}"
    ]
