"""What apps declare for the system to pick up: each app's `<module>.py` holds a list.

Default schedules (`schedules.DEFAULT_SCHEDULES`) and retention targets
(`retention.RETENTION_TARGETS`) are found the same way, so a new app adds its own by
declaring them, never by editing a central list.
"""

from importlib import import_module

from django.apps import apps
from django.utils.module_loading import module_has_submodule


def declared_in_apps(module: str, attribute: str) -> list:
    declared = []
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, module):
            declared.extend(getattr(import_module(f"{app_config.name}.{module}"), attribute, []))
    return declared
