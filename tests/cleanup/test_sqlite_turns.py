from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, transaction
from django.utils import timezone

from cleanup.sqlite_turns import SQLiteTurns
from tests.cleanup import factories

pytestmark = pytest.mark.django_db


def pragma(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("taking turns at the write lock is SQLite's")


def test_its_settings_are_handed_back_from_a_transaction_marked_for_rollback():
    (taken,) = factories.sessions(1, expires_in=timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint=777")

    with pytest.raises(IntegrityError), transaction.atomic():
        with SQLiteTurns(DEFAULT_DB_ALIAS):
            assert pragma("wal_autocheckpoint") == 0
            with transaction.atomic(savepoint=False):
                Session.objects.create(session_key=taken, session_data="", expire_date=timezone.now())

    assert pragma("wal_autocheckpoint") == 777
