"""The one status palette of the admin, and the one badge every app shows a status with.

A status is shown by its tone, not its app: a failed run, a failed report, a stale heartbeat
and a failed cleanup all read the same red, so a person scanning any page learns one code.
"""

from django.utils.html import format_html
from django.utils.safestring import SafeString

# Colours readable on the admin's white and on its dark theme alike (GitHub's status colours).
TONES = {
    "good": "#1a7f37",  # succeeded, sent, alive
    "bad": "#ba2121",  # failed, stale, not enqueued, cannot be scheduled
    "warning": "#9a6700",  # missed, partial, stopped on budget
    "busy": "#0969da",  # running, sending
    "quiet": "#57606a",  # claimed, sent, skipped, pending: nothing went wrong, nothing ran (yet)
}


def tone_colour(tone: str) -> str:
    return TONES.get(tone, TONES["quiet"])


def badge(label: str, tone: str, *, status: str = "") -> SafeString:
    """A status as a coloured pill; `status` adds a `status-<status>` class for tests and styles."""
    return format_html(
        '<span class="status-badge status-{}" style="background:{};color:#fff;padding:1px 7px;'
        'border-radius:9px;white-space:nowrap">{}</span>',
        status or tone, tone_colour(tone), label,
    )


def toned(text: str, tone: str) -> SafeString:
    """Text in a status's colour, for a sentence a pill would not fit (a problem, a count)."""
    return format_html('<strong style="color:{}">{}</strong>', tone_colour(tone), text)
