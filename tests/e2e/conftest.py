import pytest
from django.db import connection

from tests.conftest import subprocess_env
from tests.e2e.processes import RealProcess


def database_url_of_this_test() -> str:
    """The URL of the database this test uses, for the processes it starts."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def start_process(tmp_path):
    """start_process(name, argv, **env): a real process, always stopped after the test."""
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
