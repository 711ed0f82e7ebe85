from django import template

from shared.badges import badge as status_badge
from shared.badges import tone_colour as colour_of_tone
from shared.badges import toned as toned_text

register = template.Library()


@register.simple_tag
def badge(label, tone, status=""):
    return status_badge(str(label), tone, status=status)


@register.simple_tag
def toned(text, tone):
    return toned_text(str(text), tone)


@register.simple_tag
def tone_colour(tone):
    return colour_of_tone(tone)
