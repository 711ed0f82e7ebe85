"""`DJANGO_SETTINGS_MODULE=scheduler.settings`, kept for outside tools: the settings are
wiring.settings."""

from wiring.settings import *  # noqa: F403
