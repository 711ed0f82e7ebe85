from django.contrib import admin
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from scheduler.admin_crontabs import CrontabScheduleAdmin
from scheduler.admin_results import TaskResultAdmin
from scheduler.admin_runs import ScheduleRunAdmin
from scheduler.admin_schedules import IntervalScheduleAdmin, PeriodicTaskAdmin
from scheduler.models import BeatHeartbeat, Heartbeat, ScheduleRun, WorkerHeartbeat
from shared.admin_review import ReviewOnlyAdmin
from shared.badges import badge
from shared.display import seconds_ago


def liveness_badge(admin_view, heartbeat: Heartbeat) -> str:
    now = timezone.now()
    age = seconds_ago(heartbeat.last_beat_at, now=now)
    if heartbeat.is_stale(now=now):
        return badge(f"stale: last beat {age} s ago", "bad", status="stale")
    return badge(f"alive ({age} s ago)", "good", status="alive")


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
admin.site.unregister(CrontabSchedule)
admin.site.register(CrontabSchedule, CrontabScheduleAdmin)
admin.site.unregister(IntervalSchedule)
admin.site.register(IntervalSchedule, IntervalScheduleAdmin)
admin.site.register(ScheduleRun, ScheduleRunAdmin)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReviewOnlyAdmin):
    list_display = ["worker", "status", "last_beat_at", "first_beat_at", "beats"]
    readonly_fields = ["worker", "first_beat_at", "last_beat_at", "beats"]

    status = admin.display(description="status")(liveness_badge)


admin.site.unregister(TaskResult)
admin.site.register(TaskResult, TaskResultAdmin)


@admin.register(BeatHeartbeat)
class BeatHeartbeatAdmin(ReviewOnlyAdmin):
    list_display = ["node", "status", "last_beat_at", "started_at"]
    status = admin.display(description="status")(liveness_badge)
