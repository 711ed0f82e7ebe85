from django.apps import AppConfig


class WiringConfig(AppConfig):
    # An app only so that Django finds its management commands (prepare, launch).
    name = "wiring"
    verbose_name = "Wiring"
