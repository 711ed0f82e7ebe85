import pytest

from wiring.staff_login import staff_login_ensure

pytestmark = pytest.mark.django_db


def test_it_creates_a_staff_login_with_a_generated_password_shown_once(client):
    login = staff_login_ensure(username="admin", email="a@example.com", password=None)
    assert login.created and login.generated_password
    assert client.login(username="admin", password=login.generated_password)

    again = staff_login_ensure(username="admin", email="a@example.com", password=None)
    assert not again.created and again.generated_password is None
    assert client.login(username="admin", password=login.generated_password)


def test_a_password_from_the_environment_is_applied_to_an_existing_login(client):
    staff_login_ensure(username="admin", email="a@example.com", password=None)
    login = staff_login_ensure(username="admin", email="a@example.com", password="chosen-by-ops-42")
    assert login.generated_password is None
    assert client.login(username="admin", password="chosen-by-ops-42")


def test_it_restores_staff_access_to_a_login_that_lost_it(django_user_model, client):
    django_user_model.objects.create_user("admin", password="kept-password-1", is_staff=False)
    staff_login_ensure(username="admin", email="a@example.com", password=None)
    user = django_user_model.objects.get(username="admin")
    assert user.is_staff and user.is_active
    assert client.login(username="admin", password="kept-password-1")
