import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.mail import SmtpServer, free_port
from wiring.embedded_redis import EmbeddedRedis

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Variables a test sets on purpose; the rest of the environment is passed through.
CONFIG_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "HTTPS", "DATA_DIR",
    "WEB_BIND", "ADMIN_USERNAME", "ADMIN_PASSWORD", "ADMIN_EMAIL", "TASK_TIME_LIMIT",
    "TASK_SOFT_TIME_LIMIT", "BROKER_VISIBILITY_TIMEOUT", "EMAIL_PORT", "WEB_CONCURRENCY", "WORKER_CONCURRENCY",
    "OUTBOUND_ALLOWED_NETWORKS", "OUTBOUND_HOSTS", "SCRAPER_CONTACT", "SCRAPER_HOST_INTERVAL_SECONDS",
    "SCRAPER_HOST_CONCURRENCY", "ALERT_EMAILS", "ALERT_WEBHOOK_URL", "WEBHOOK_ALLOWED_PORTS", "SITE_URL",
    "METRICS_TOKEN", "BEAT_STALE_SECONDS", "WORKER_STALE_SECONDS", "EMAIL_HOST",
    "LOGIN_FAILURE_LIMIT", "LOGIN_LOCKOUT_MINUTES", "RUN_LEASE_SECONDS", "LOST_MESSAGE_CHECK_SECONDS",
    "EXTRA_APPS", "JOB_COMMANDS",
)


def subprocess_env(**overrides: str | None) -> dict:
    """The environment for a child process: ours, without config variables, plus overrides."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    env["DJANGO_SETTINGS_MODULE"] = "scheduler.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


def run_manage(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout,
    )


# Every test in these folders carries the marker of the same name, so that `-m e2e`, `-m browser`,
# `-m faults` and `-m "not e2e and not browser and not faults"` select by folder. (A `pytestmark` in a conftest.py marks
# nothing: pytest reads it from test modules only.)
MARKED_FOLDERS = ("e2e", "browser", "faults")


def pytest_collection_modifyitems(items) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        if item.path.is_relative_to(tests_dir):
            folder = item.path.relative_to(tests_dir).parts[0]
            if folder in MARKED_FOLDERS:
                item.add_marker(folder)


@pytest.fixture(autouse=True)
def static_files_without_collectstatic(settings):
    """Admin pages render in tests from a fresh checkout, where collectstatic never ran.

    The manifest storage the site uses needs collectstatic's manifest; `make run` and the
    compose file run it, the test suite does not.
    """
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A private, real Redis server for the whole test session."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


def database_url_of_this_test() -> str:
    """The URL of the database this test uses, for the processes it starts."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


# The real processes of tests/e2e/ and tests/faults/: Celery workers and beats, `manage.py launch`.
@pytest.fixture
def start_process(tmp_path):
    """start_process(name, argv, **env): a real process, always stopped after the test."""
    # Imported here: tests.e2e.processes imports this module's PROJECT_DIR.
    from tests.e2e.processes import RealProcess

    started = []

    def start(name: str, argv: list[str], **env: str) -> RealProcess:
        process = RealProcess(name, argv, subprocess_env(**env), tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        # Shown by pytest only when the test failed.
        print(f"----- {process.name} (exit {process.process.returncode}) -----\n{process.output()}")


@pytest.fixture
def app_env(redis_url, tmp_path) -> dict:
    """What a worker or beat needs to reach this test's database and the private Redis."""
    return {"DATABASE_URL": database_url_of_this_test(), "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests")
    client.force_login(user)
    return client


@pytest.fixture
def smtp_port(settings) -> int:
    port = free_port()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    return port


@pytest.fixture
def smtp_server(smtp_port):
    """A real SMTP server on loopback (aiosmtpd); Django's SMTP backend points at it."""
    server = SmtpServer(smtp_port)
    server.start()
    yield server.handler
    server.stop()
