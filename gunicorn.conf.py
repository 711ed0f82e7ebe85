# Read by gunicorn from the working directory; the address comes from WEB_BIND in settings,
# so the Procfile, docker-compose.yml and `make run` agree on it.
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wiring.settings")

from django.conf import settings  # noqa: E402

bind = settings.WEB_BIND
workers = settings.WEB_CONCURRENCY
accesslog = "-"
# Gunicorn 27's control socket defaults to one path per user, so a second instance (tests, a
# second checkout) would fight over it; nothing here uses it.
control_socket_disable = True
# The admin's Test fetch runs the fetcher in the request: robots.txt and the page may each take
# its 30 s total deadline. Gunicorn's default of 30 s would kill the worker mid-fetch.
timeout = 90
