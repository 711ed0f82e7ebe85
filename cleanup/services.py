from importlib import import_module

from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone


def sessions_purge_expired() -> int:
    """Remove expired sessions with Django's own session store; return how many there were.

    The count is taken first because the stores' clear_expired() returns nothing.
    """
    expired = Session.objects.filter(expire_date__lt=timezone.now()).count()
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    return expired
