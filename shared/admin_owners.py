"""The admin of a row that owns its schedule (shared.owned_schedules: a report, a source): written
and deleted only through its own services, so its PeriodicTask is always in step, and showing a
link to that schedule."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html


class ScheduleOwnerAdmin(admin.ModelAdmin):
    # How the owner is named, and why its schedule may be paused, in the schedule column.
    owner_noun = "row"
    paused_because = "disabled"

    def owner_save(self, owner) -> None:
        raise NotImplementedError

    def owner_delete(self, owner) -> None:
        raise NotImplementedError

    def save_model(self, request, obj, form, change) -> None:
        self.owner_save(obj)

    def delete_model(self, request, obj) -> None:
        self.owner_delete(obj)

    def delete_queryset(self, request, queryset) -> None:
        for owner in queryset:
            self.owner_delete(owner)

    @admin.display(description="schedule")
    def schedule_link(self, owner) -> str:
        if owner.schedule_id is None:
            return f"created when the {self.owner_noun} is saved"
        state = "runs" if owner.schedule.enabled else f"paused: {self.paused_because}"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[owner.schedule_id])
        return format_html('<a href="{}">{}</a> ({})', url, owner.schedule.name, state)
