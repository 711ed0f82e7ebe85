from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm as BeatPeriodicTaskForm
from django_celery_beat.models import PeriodicTask
from django_celery_results.admin import TaskResultAdmin as ResultsTaskResultAdmin
from django_celery_results.models import TaskResult

from scheduler.admin_review import ReviewOnlyAdmin
from scheduler.celery import app as celery_app
from scheduler.models import BeatHeartbeat, Heartbeat, WorkerHeartbeat


def liveness_badge(admin_view, heartbeat: Heartbeat) -> str:
    age = int((timezone.now() - heartbeat.last_beat_at).total_seconds())
    if heartbeat.is_stale():
        return format_html('<strong style="color:#ba2121">stale: last beat {} s ago</strong>', age)
    return format_html('<span style="color:#1a7f37">alive ({} s ago)</span>', age)


class PeriodicTaskForm(BeatPeriodicTaskForm):
    """django-celery-beat's form, refusing a task name no worker could run.

    The stock form accepts any text, and the mistake only shows later as failures in the
    worker's log, so it is caught here where the person typing can fix it.
    """

    def clean(self):
        data = super().clean()
        task = data.get("task")
        if task:
            celery_app.loader.import_default_modules()
            if task not in celery_app.tasks:
                self.add_error("task", (
                    f"There is no task named {task!r}. Pick one from the list of known tasks "
                    "or check the spelling of the dotted path."
                ))
        return data


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    form = PeriodicTaskForm


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReviewOnlyAdmin):
    list_display = ["worker", "status", "last_beat_at", "first_beat_at", "beats"]
    readonly_fields = ["worker", "first_beat_at", "last_beat_at", "beats"]

    status = admin.display(description="status")(liveness_badge)


admin.site.unregister(TaskResult)


@admin.register(TaskResult)
class TaskResultAdmin(ReviewOnlyAdmin, ResultsTaskResultAdmin):
    """django-celery-results' page, narrowed to what a person reviews, and read-only.

    The stock list leads with the 36-character task id, which wraps and pushes the state and
    worker off screen; results are written by workers, never added or edited by hand.
    """

    list_display = ["periodic_task_name", "task_name", "status", "worker", "date_started", "date_done", "short_id"]
    list_display_links = ["periodic_task_name", "task_name"]

    @admin.display(description="task id")
    def short_id(self, result: TaskResult) -> str:
        return result.task_id[:8]


@admin.register(BeatHeartbeat)
class BeatHeartbeatAdmin(ReviewOnlyAdmin):
    list_display = ["node", "status", "last_beat_at", "started_at"]
    status = admin.display(description="status")(liveness_badge)
