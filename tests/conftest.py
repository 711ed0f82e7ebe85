import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.mail import SmtpServer, free_port
from wiring.embedded_redis import EmbeddedRedis

PROJECT_DIR = Path(__file__).resolve().parent.parent

# The fault suite's table of scenarios: a plugin, since under pytest-xdist the process that prints
# the session's summary loads no conftest.py below this one.
pytest_plugins = ["tests.faults.table"]

# Variables a test sets on purpose; the rest of the environment is passed through.
CONFIG_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "HTTPS", "DATA_DIR",
    "WEB_BIND", "ADMIN_USERNAME", "ADMIN_PASSWORD", "ADMIN_EMAIL", "TASK_TIME_LIMIT",
    "TASK_SOFT_TIME_LIMIT", "BROKER_VISIBILITY_TIMEOUT", "EMAIL_PORT", "WEB_CONCURRENCY", "WORKER_CONCURRENCY",
    "OUTBOUND_ALLOWED_NETWORKS", "OUTBOUND_HOSTS", "SCRAPER_CONTACT", "SCRAPER_HOST_INTERVAL_SECONDS",
    "SCRAPER_HOST_CONCURRENCY", "ALERT_EMAILS", "ALERT_WEBHOOK_URL", "WEBHOOK_ALLOWED_PORTS", "SITE_URL",
    "METRICS_TOKEN", "BEAT_STALE_SECONDS", "WORKER_STALE_SECONDS", "EMAIL_HOST",
    "LOGIN_FAILURE_LIMIT", "LOGIN_LOCKOUT_MINUTES", "RUN_LEASE_SECONDS", "LOST_MESSAGE_CHECK_SECONDS",
    "MAIL_RETRY_BASE_SECONDS", "EXTRA_APPS", "JOB_COMMANDS", "REPORT_SOURCE_DEFAULT_URL",
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


@pytest.fixture(scope="session")
def empty_static_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("staticfiles")


@pytest.fixture(autouse=True)
def static_files_without_collectstatic(settings, empty_static_root):
    """Admin pages render in tests from a fresh checkout, where collectstatic never ran.

    The manifest storage the site uses needs collectstatic's manifest; `make run` and the
    compose file run it, the test suite does not. STATIC_ROOT is an empty folder of the
    session's own: WhiteNoise lists it whenever a test client starts, and the project's
    staticfiles folder is rewritten by `collectstatic` in end-to-end tests running alongside
    (pytest-xdist), so a listed file could vanish before WhiteNoise read it.
    """
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.STATIC_ROOT = empty_static_root


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    """Passwords hashed in this process use MD5, as Django's testing docs advise.

    The site's PBKDF2 takes a million rounds (0.2 s of CPU) per hash, and nearly every admin
    test makes a staff login: minutes of CPU per suite for no test's sake. The processes that
    tests start (launch, workers) keep the site's hashers, and log in only users they made.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
def app_env(redis_url, tmp_path, request) -> dict:
    """What a worker or beat needs to reach this test's database (reports: as the reader role) and the private Redis."""
    env = {"DATABASE_URL": database_url_of_this_test(), "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data")}
    if connection.vendor == "postgresql":
        env["REPORT_SOURCE_DEFAULT_URL"] = request.getfixturevalue("report_reader_url")
    return env


@pytest.fixture(scope="session")
def report_reader_url(django_db_setup, django_db_blocker) -> str:
    """A real reader role for reports on the PostgreSQL test database, made by the compose file's own
    script (compose/reports-reader.sql) and dropped after the session; its URL."""
    s = connection.settings_dict
    role, password = f"{s['NAME']}_reports_reader".lower(), "reader-pw-for-tests"
    where = ["-h", s["HOST"] or "127.0.0.1", "-p", str(s["PORT"] or 5432), "-U", s["USER"], "-d", s["NAME"]]
    if not shutil.which("psql"):
        pytest.fail("PostgreSQL tests make the reports' reader role with psql (compose/reports-reader.sql): install it")
    made = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"reader={role}", *where,
                           "-f", str(PROJECT_DIR / "compose" / "reports-reader.sql")],
                          env={**os.environ, "PGPASSWORD": s["PASSWORD"] or "", "POSTGRES_REPORTS_PASSWORD": password},
                          capture_output=True, text=True)
    if made.returncode:
        pytest.fail(f"compose/reports-reader.sql failed: {made.stderr}")
    yield (f"postgres://{role}:{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}")
    from reports.sources import data_source_connections_close

    data_source_connections_close()
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f'DROP OWNED BY "{role}"')
        cursor.execute(f'DROP ROLE "{role}"')


@pytest.fixture(autouse=True)
def reports_read_as_the_reader_role(request, monkeypatch):
    """On PostgreSQL, SQL sections read the site's database through the reader role, as in production
    (the tests' own role is a superuser, which reports refuse)."""
    uses_database = request.node.get_closest_marker("django_db") or {"db", "transactional_db", "live_server"} & set(
        request.fixturenames)
    if connection.vendor == "postgresql" and uses_database:
        monkeypatch.setenv("REPORT_SOURCE_DEFAULT_URL", request.getfixturevalue("report_reader_url"))


@pytest.fixture
def broker_at():
    """Points this process's Celery app (the admin's) at a broker URL for one test."""
    from wiring.celery import app, broker_connections_forget

    original = app.conf.broker_url

    def point(url: str) -> None:
        app.conf.broker_url = url
        broker_connections_forget()

    yield point
    point(original)


@pytest.fixture
def app_publishing_to_test_redis(redis_url, broker_at):
    """This process's Celery app publishing to the test's private Redis, as the admin's does to its own."""
    broker_at(redis_url)


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
