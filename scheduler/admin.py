from django import forms
from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm as BeatPeriodicTaskForm
from django_celery_beat.models import PeriodicTask

from scheduler.celery import app as celery_app
from scheduler.models import WorkerHeartbeat


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
                message = (
                    f"There is no task named {task!r}. Pick one from the list of known tasks "
                    "or check the spelling of the dotted path."
                )
                self.add_error("task", message)
                raise forms.ValidationError(message)
        return data


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    form = PeriodicTaskForm


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["worker", "status", "last_beat_at", "first_beat_at", "beats"]
    readonly_fields = ["worker", "first_beat_at", "last_beat_at", "beats"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="status")
    def status(self, obj: WorkerHeartbeat) -> str:
        age = int((timezone.now() - obj.last_beat_at).total_seconds())
        if obj.is_stale():
            return format_html('<strong style="color:#ba2121">stale: last beat {} s ago</strong>', age)
        return format_html('<span style="color:#1a7f37">alive ({} s ago)</span>', age)
