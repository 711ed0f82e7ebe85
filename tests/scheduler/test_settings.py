"""Configuration from the environment, checked the way a person meets it: by starting a command."""

import os
import secrets
import sys

import pytest

from tests.conftest import run_manage, subprocess_env


def show_setting(expression: str, env: dict) -> str:
    """What `expression` (over `settings`) is in a freshly started process."""
    result = run_manage("shell", "-v", "0", "-c", f"from django.conf import settings; print({expression})", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def configuration_errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_it_names_each_bad_variable_on_one_line_and_stops(tmp_path):
    result = run_manage("check", env=subprocess_env(
        DATA_DIR=str(tmp_path), DEBUG="maybe", DATABASE_URL="postgress//nohost", EMAIL_PORT="twenty-five",
    ))
    assert result.returncode == 2
    errors = configuration_errors(result)
    assert sorted(errors) == [
        "configuration error: DATABASE_URL: invalid value: Not a valid database URL.",
        "configuration error: DEBUG: invalid value: Not a valid boolean.",
        "configuration error: EMAIL_PORT: invalid value: Not a valid integer.",
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("variable, value, message", [
    ("WEB_BIND", "nonsense", "'nonsense' is not HOST:PORT, e.g. 127.0.0.1:8000"),
    ("WEB_BIND", "127.0.0.1:99999", "'127.0.0.1:99999' is not HOST:PORT, e.g. 127.0.0.1:8000"),
    ("WEB_CONCURRENCY", "zero", "invalid value: Not a valid integer."),
    ("WORKER_CONCURRENCY", "0", "invalid value: must be a positive number"),
    ("MAIL_RETRY_BASE_SECONDS", "0", "invalid value: must be a positive number"),
    ("MAIL_RETRY_BASE_SECONDS", "soon", "invalid value: Not a valid number."),
    ("OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,169.254.169.254/32",
     "169.254.169.254/32 would allow 169.254.0.0/16: link-local, where cloud metadata services answer (RFC 3927); "
     "metadata addresses can never be allowed"),
    ("OUTBOUND_ALLOWED_NETWORKS", "loopback", "'loopback' is not a network (write it as 127.0.0.0/8 or ::1/128)"),
])
def test_it_refuses_bad_process_settings(tmp_path, variable, value, message):
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(tmp_path), **{variable: value}))
    assert result.returncode == 2
    assert configuration_errors(result) == [f"configuration error: {variable}: {message}"]


def test_it_refuses_a_redis_url_that_is_not_redis(tmp_path):
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(tmp_path), REDIS_URL="http://cache:6379"))
    assert result.returncode == 2
    assert configuration_errors(result) == [
        "configuration error: REDIS_URL: must start with one of redis://, rediss://, unix://, redis+socket://"
    ]


@pytest.mark.parametrize("variable, value, message", [
    ("DATABASE_URL", "mysql://reader:s3cret-pw@db.internal/sales",
     "mysql:// is not supported; use postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:////ABSOLUTE/PATH"),
    ("TIME_ZONE", "Mars/Olympus",
     "invalid value: 'Mars/Olympus' is not a timezone name; use one such as 'Europe/Berlin' or 'UTC'"),
    ("TIME_ZONE", "../../etc/passwd",
     "invalid value: '../../etc/passwd' is not a timezone name; use one such as 'Europe/Berlin' or 'UTC'"),
])
def test_it_names_an_unusable_database_or_timezone_on_one_line_without_a_traceback(tmp_path, variable, value,
                                                                                   message):
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(tmp_path), **{variable: value}))
    assert result.returncode == 2
    assert configuration_errors(result) == [f"configuration error: {variable}: {message}"]
    assert "s3cret-pw" not in result.stderr


def test_it_names_a_data_dir_that_cannot_be_created_on_one_line_without_a_traceback(tmp_path):
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "data"
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(data_dir)))
    assert result.returncode == 2
    assert configuration_errors(result) == [
        f"configuration error: DATA_DIR: cannot create the folder {data_dir}: Not a directory"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_it_names_a_data_dir_it_may_not_write_in_on_one_line_without_a_traceback(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o500)
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(data_dir)))
    assert result.returncode == 2
    assert configuration_errors(result) == [
        f"configuration error: DATA_DIR: {data_dir} is not writable by the user this process runs as"
    ]


def test_it_refuses_a_visibility_timeout_that_would_run_long_tasks_twice(tmp_path):
    result = run_manage("check", env=subprocess_env(
        DATA_DIR=str(tmp_path), TASK_TIME_LIMIT="7200", TASK_SOFT_TIME_LIMIT="7000",
        BROKER_VISIBILITY_TIMEOUT="3600",
    ))
    assert result.returncode == 2
    assert configuration_errors(result) == [
        "configuration error: BROKER_VISIBILITY_TIMEOUT: must be longer than TASK_TIME_LIMIT, or long tasks run twice"
    ]


def test_deploy_check_has_no_warnings_with_production_variables(tmp_path):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=subprocess_env(
        DATA_DIR=str(tmp_path), DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="ops.example.com", HTTPS="true",
    ))
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_keeps_a_generated_secret_key_across_starts(tmp_path):
    env = subprocess_env(DATA_DIR=str(tmp_path))
    first, second = show_setting("settings.SECRET_KEY", env), show_setting("settings.SECRET_KEY", env)
    assert first == second and len(first) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_processes_starting_at_once_on_a_new_data_folder_all_get_the_one_key_written(tmp_path):
    # `make run` starts web, worker and beat together: each must sign with the same key.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Pool(8) as pool:
        keys = pool.starmap(_generated_key, [(tmp_path,)] * 64)
    assert len(set(keys)) == 1 and len(keys[0]) >= 50
    assert (tmp_path / "secret_key").read_text() == keys[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["secret_key"]  # no draft left behind


def _generated_key(data_dir) -> str:
    from wiring.environment import Configuration

    os.environ.pop("SECRET_KEY", None)  # a forked process of the pool's: its environment is its own
    return Configuration().secret_key("SECRET_KEY", data_dir)


def test_an_empty_generated_key_file_stops_start_up_naming_it(tmp_path):
    (tmp_path / "secret_key").write_text("")
    result = run_manage("check", env=subprocess_env(DATA_DIR=str(tmp_path)))
    assert result.returncode == 2
    assert configuration_errors(result) == [
        f"configuration error: SECRET_KEY: unset, and the generated key's file {tmp_path / 'secret_key'} is empty: "
        "delete it to have a new key made (everyone is logged out), or set SECRET_KEY"]


def test_it_uses_the_running_embedded_redis_when_redis_url_is_unset(tmp_path):
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "url").write_text("redis://:pw@127.0.0.1:41234/0")
    broker = show_setting("settings.CELERY_BROKER_URL", subprocess_env(DATA_DIR=str(tmp_path)))
    assert broker == "redis://:pw@127.0.0.1:41234/0"


@pytest.mark.parametrize("url, engine", [
    ("sqlite:///{tmp}/db.sqlite3", "sqlite3"),
    ("postgres://user:pw@db.example.com:5432/ops", "postgresql"),
])
def test_it_reads_the_database_from_database_url(tmp_path, url, engine):
    shown = show_setting(
        "settings.DATABASES['default']['ENGINE'], "
        "settings.DATABASES['default'].get('OPTIONS', {}).get('transaction_mode')",
        subprocess_env(DATA_DIR=str(tmp_path), DATABASE_URL=url.format(tmp=tmp_path)),
    )
    backend, transaction_mode = shown.split()
    assert backend == f"django.db.backends.{engine}"
    # SQLite is shared by web, worker and beat: writers take the lock up front.
    assert transaction_mode == ("IMMEDIATE" if engine == "sqlite3" else "None")


BROKER_PASSWORD, DATABASE_PASSWORD = "s3cret-" + "broker-pw", "s3cret-" + "db-pw"


@pytest.fixture
def secret_urls(settings):
    """Settings holding passwords in URLs (set here, so the traceback's source lines do not show them)."""
    settings.DEBUG = True
    settings.CELERY_BROKER_URL = f"redis://:{BROKER_PASSWORD}@redis.internal:6379/0"
    settings.REPORT_SOURCE_SALES_URL = f"postgresql://reader:{DATABASE_PASSWORD}@db.internal/sales"


def fail() -> None:
    raise RuntimeError("boom")


def test_the_error_page_never_shows_the_brokers_or_databases_password(rf, secret_urls):
    from django.views.debug import technical_500_response

    try:
        fail()
    except RuntimeError:
        page = technical_500_response(rf.get("/admin/"), *sys.exc_info()).content.decode()
    assert "boom" in page and "CELERY_BROKER_URL" in page
    assert BROKER_PASSWORD not in page and DATABASE_PASSWORD not in page


def test_the_files_a_process_creates_in_the_data_folder_are_its_owners_alone(tmp_path):
    data = tmp_path / "data"
    result = run_manage("migrate", "--verbosity", "0", env=subprocess_env(DATA_DIR=str(data)))
    assert result.returncode == 0, result.stderr
    created = [path for path in data.rglob("*") if path.is_file()]
    assert any(path.name == "db.sqlite3" for path in created)
    assert [(path.name, oct(path.stat().st_mode & 0o077)) for path in created
            if path.stat().st_mode & 0o077] == []
