from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from monitoring.models import AlertDelivery, AlertSettings, EvaluatorHeartbeat, Flip, SystemHealth
from scheduler.admin_runs import HEALTH_TONES
from shared.admin_inlines import OneRowInline
from shared.admin_pages import CappedCountPaginator
from shared.admin_review import ReviewOnlyAdmin
from shared.badges import badge
from shared.display import moment

DELIVERY_TONES = {"sent": "good", "printed": "warning", "pending": "quiet", "sending": "busy", "failed": "bad"}


def state_badge(state: str) -> str:
    return badge(state, HEALTH_TONES.get(state, "quiet"), status=f"health-{state}")


class AlertSettingsForm(forms.ModelForm):
    class Meta:
        model = AlertSettings
        fields = ["emails", "webhook_url", "remind_every_minutes", "muted_until", "mute_reason"]
        labels = {"remind_every_minutes": "Remind every (minutes)"}


class AlertSettingsInline(OneRowInline):
    """Who is alerted about this schedule, shown on its page (declared in monitoring/declarations.py)."""

    model = AlertSettings
    form = AlertSettingsForm
    verbose_name = verbose_name_plural = "alerts"


@admin.register(AlertSettings)
class AlertSettingsAdmin(admin.ModelAdmin):
    form = AlertSettingsForm
    list_display = ["task", "emails", "webhook_url", "remind_every_minutes", "muted_until"]
    search_fields = ["task__name", "emails"]
    list_select_related = ["task"]


class DeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = readonly_fields = ["channel", "recipient", "status_badge", "attempts", "sent_at", "last_error"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="status")
    def status_badge(self, delivery: AlertDelivery) -> str:
        return badge(delivery.get_status_display(), DELIVERY_TONES.get(delivery.status, "quiet"),
                     status=f"delivery-{delivery.status}")


@admin.register(Flip)
class FlipAdmin(ReviewOnlyAdmin):
    list_display = ["when", "title", "from_badge", "to_badge", "cause", "alerted", "run_link"]
    list_filter = ["subject", "to_state", "reminder"]
    search_fields = ["schedule_name", "why"]
    inlines = [DeliveryInline]
    fields = readonly_fields = ["when", "title", "from_badge", "to_badge", "cause", "why", "slot", "run_link",
                                "alerted"]
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator

    @admin.display(description="at", ordering="at")
    def when(self, flip: Flip) -> str:
        return moment(flip.at, zone=True)

    @admin.display(description="from")
    def from_badge(self, flip: Flip) -> str:
        return state_badge(flip.from_state)

    @admin.display(description="to")
    def to_badge(self, flip: Flip) -> str:
        return state_badge(flip.to_state)

    @admin.display(description="alerted")
    def alerted(self, flip: Flip) -> str:
        return flip.silenced or "yes"

    @admin.display(description="run")
    def run_link(self, flip: Flip) -> str:
        if not flip.run_id:
            return "-"
        return format_html('<a href="{}">run {}</a>', reverse("admin:scheduler_schedulerun_change",
                                                              args=[flip.run_id]), flip.run_id)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReviewOnlyAdmin):
    list_display = ["flip", "channel", "recipient", "status_badge", "attempts", "sent_at", "last_error"]
    list_filter = ["channel", "status"]
    list_select_related = ["flip"]
    status_badge = DeliveryInline.status_badge


@admin.register(SystemHealth)
class SystemHealthAdmin(ReviewOnlyAdmin):
    list_display = ["part", "state", "since", "why"]


@admin.register(EvaluatorHeartbeat)
class EvaluatorHeartbeatAdmin(ReviewOnlyAdmin):
    list_display = ["node", "last_beat_at", "started_at"]
