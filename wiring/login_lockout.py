"""The admin login's throttle (django-axes, configured in settings): who is refused, and what
they see.

A user name is locked out from one address after LOGIN_FAILURE_LIMIT failed logins from there;
the attempts, with each lockout, are under Axes › Access attempts for a superuser to review or
delete (deleting one lifts its lockout at once).
"""

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username
from django.conf import settings
from django.contrib import admin
from django.shortcuts import render


class LoginThrottle(AxesStandaloneBackend):
    """Refuses a login, before its password is checked, while its user name is locked out from
    the request's address.

    A login without a request is let through to the next backend: the lockout is keyed on the
    request's address, and every login an outsider can reach (the admin's form) passes its
    request; only code running here (the test client's `login()`, a shell) passes none.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_response(request, original_response, credentials):
    """The login page, saying why the login was refused and for how long (429, as axes answers)."""
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "username": get_client_username(request, credentials) or "",
        "minutes": settings.LOGIN_LOCKOUT_MINUTES,
    }
    return render(request, "admin/login_locked_out.html", context, status=429)
