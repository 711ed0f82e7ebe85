"""The staff login `make run` makes sure of, so a new user can open the admin at once."""

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model


@dataclass(frozen=True)
class StaffLogin:
    username: str
    created: bool
    # Set only when this call generated the password: it is shown once and never stored.
    generated_password: str | None


def staff_login_ensure(*, username: str, email: str, password: str | None) -> StaffLogin:
    """Make sure `username` can log in to the admin; a given password always wins."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    generated = None
    created = user is None
    if created:
        generated = None if password else secrets.token_urlsafe(12)
        user = user_model.objects.create_superuser(
            username=username, email=email, password=password or generated
        )
    elif password or not (user.is_staff and user.is_active):
        user.is_staff = user.is_active = True
        if password:
            user.set_password(password)
        user.save()
    return StaffLogin(username=username, created=created, generated_password=generated)
