from django import template

from scheduler.selectors import beat_liveness

register = template.Library()


@register.inclusion_tag("scheduler/beat_status.html")
def beat_status() -> dict:
    return beat_liveness()
