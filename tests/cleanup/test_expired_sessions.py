from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from cleanup.tasks import purge_expired_sessions

pytestmark = pytest.mark.django_db


def make_session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["user"] = "someone"
    store.create()
    Session.objects.filter(session_key=store.session_key).update(expire_date=timezone.now() + expires_in)
    return store.session_key


def test_it_removes_expired_sessions_and_keeps_live_ones():
    expired = [make_session(-timedelta(minutes=1)) for _ in range(3)]
    live = [make_session(timedelta(days=1)) for _ in range(2)]

    assert purge_expired_sessions.apply().get() == {"sessions_deleted": 3}

    remaining = set(Session.objects.values_list("session_key", flat=True))
    assert remaining == set(live)
    assert not remaining & set(expired)
