from celery import shared_task

from cleanup.services import sessions_purge_expired


@shared_task
def purge_expired_sessions() -> dict:
    return {"sessions_deleted": sessions_purge_expired()}
