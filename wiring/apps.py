from django.apps import AppConfig


class WiringConfig(AppConfig):
    # An app so that Django finds its management commands (prepare, launch), its template (the
    # login's lockout page) and its declarations (retention of the login throttle's tables).
    name = "wiring"
    verbose_name = "Wiring"
