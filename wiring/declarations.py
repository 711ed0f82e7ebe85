"""What the composition root declares (shared.declarations): the retention of the login
throttle's tables (django-axes), which belong to no app of the product."""

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from shared.declarations import RetentionTarget


def _attempts_still_counting() -> Q:
    # Axes ignores attempts older than the cool-off; a younger one may hold a running lockout,
    # which no policy, however short, may lift.
    return Q(attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)


RETENTION_TARGETS = [
    RetentionTarget(
        key="login_attempts",
        model="axes.AccessAttempt",
        description="Failed logins counted per user name and address (with lockouts); a running lockout is kept.",
        age_field="attempt_time",
        default_max_age_days=1,
        kept=_attempts_still_counting,
    ),
    RetentionTarget(
        key="login_log",
        model="axes.AccessLog",
        description="A row per successful login to the admin, with its address and when it logged out.",
        age_field="attempt_time",
        default_max_age_days=90,
    ),
]
