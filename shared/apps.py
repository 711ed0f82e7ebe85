from django.apps import AppConfig


class SharedConfig(AppConfig):
    # An app only so that templates can `{% load badges %}`; it has no models.
    name = "shared"
    verbose_name = "Shared"
