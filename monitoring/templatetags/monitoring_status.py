from django import template

from monitoring.status import system_status as read_system_status

register = template.Library()


@register.inclusion_tag("monitoring/system_status.html")
def system_status() -> dict:
    return read_system_status()
