"""Configuration read from the environment, validated before anything starts.

Every variable is read first and validated together, so that a person who set three things
wrong learns about all three at once, one line each, naming the variable; the process then
stops with exit status 2 instead of a traceback that buries the cause.
"""

import importlib
import os
import secrets
import sys
from ipaddress import ip_address
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError as DjangoValidationError
from environs import Env, EnvValidationError
from marshmallow import ValidationError

from scraping.addresses import ForbiddenNetworks, allowed_networks
from scraping.gate import Refused, url_target
from shared.addresses import email_list, validate_email_list
from wiring.private_files import private_file_write

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket")
# The two databases the product is built and tested on; any other engine failed at its first
# query with an import error's traceback (mysql://: "Did you install mysqlclient?").
DATABASE_ENGINES = ("django.db.backends.sqlite3", "django.db.backends.postgresql")


class Configuration:
    def __init__(self) -> None:
        # eager=False collects every parse error instead of raising on the first one.
        self.env = Env(eager=False)
        self.problems: list[str] = []

    def problem(self, variable: str, message: str) -> None:
        self.problems.append(f"{variable}: {message}")

    def writable_folder(self, variable: str, default: Path) -> Path | None:
        """The folder, created if missing; None (and a problem) when this process cannot write in it."""
        folder = self.env.path(variable, default)
        if folder is None:
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            self.problem(variable, f"cannot create the folder {folder}: {error.strerror}")
            return None
        if not os.access(folder, os.W_OK | os.X_OK):
            self.problem(variable, f"{folder} is not writable by the user this process runs as")
            return None
        return folder

    def database(self, variable: str) -> dict | None:
        """The database the URL names; None when unset (the embedded SQLite file)."""
        url = self.env.str(variable, "")
        if not url:
            return None
        database = self.env.dj_db_url(variable, conn_max_age=60, conn_health_checks=True)
        if database is not None and database["ENGINE"] not in DATABASE_ENGINES:
            # The scheme only: the rest of the URL may hold a password.
            scheme = url.partition("://")[0]
            self.problem(variable, f"{scheme}:// is not supported; use postgres://USER:PASSWORD@HOST:PORT/NAME "
                                   "or sqlite:////ABSOLUTE/PATH")
        return database

    def redis_url(self, variable: str) -> str | None:
        value = self.env.str(variable, None)
        if value is not None and value.partition("://")[0] not in REDIS_SCHEMES:
            self.problem(variable, f"must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
        return value

    def importable_apps(self, variable: str) -> list[str]:
        """Django apps of a team's own, by dotted module name; each must import (a typo, or a
        folder not on the path, is one line here instead of a traceback in every process)."""
        names = [name.strip() for name in self.env.list(variable, []) if name.strip()]
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as error:  # whatever the module raises is the module's problem to name
                self.problem(variable, f"the module {name!r} does not import: {type(error).__name__}: {error}")
        return names

    def host_and_port(self, variable: str, default: str) -> str:
        value = self.env.str(variable, default)
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.problem(variable, f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8000")
        return value

    def outbound_networks(self, variable: str) -> tuple:
        """Networks the fetcher's gate may reach although it refuses them (never a metadata one)."""
        entries = self.env.list(variable, [])
        try:
            return allowed_networks(entries or [])
        except ForbiddenNetworks as error:
            self.problem(variable, str(error))
            return ()

    def outbound_hosts(self, variable: str) -> dict[str, str]:
        """Names the fetcher resolves to a fixed address, like /etc/hosts: `name=address,...`.
        The address is still classified by the gate like any DNS answer."""
        hosts = {}
        for entry in self.env.list(variable, []) or []:
            name, _, address = entry.partition("=")
            try:
                ip_address(address.strip())
            except ValueError:
                self.problem(variable, f"{entry!r} is not name=address (an IPv4 or IPv6 address)")
                continue
            hosts[name.strip().lower().rstrip(".")] = address.strip()
        return hosts

    def email_list(self, variable: str) -> list[str]:
        value = self.env.str(variable, "") or ""
        try:
            validate_email_list(value)
        except DjangoValidationError as error:
            self.problem(variable, error.messages[0])
            return []
        return email_list(value)

    def outbound_url(self, variable: str, *, ports: tuple[int, ...], allowed: tuple) -> str:
        """A URL the fetcher will be asked to reach: refused at start-up if its gate refuses it."""
        value = self.env.str(variable, "") or ""
        if value:
            try:
                url_target(value, ports=ports, allowed=allowed)
            except Refused as refused:
                self.problem(variable, f"refused by the fetcher's gate: {refused.rule}")
                return ""
        return value

    def secret_key(self, variable: str, data_dir: Path) -> str:
        """The environment's key, else a per-install key kept in the data folder.

        A generated key is kept rather than made anew each start, so logins survive restarts
        of the embedded set-up; production sets SECRET_KEY and never touches the file.
        """
        value = self.env.str(variable, None)
        if value:
            return value
        key_file = data_dir / "secret_key"
        if not key_file.exists():
            private_file_write(key_file, secrets.token_urlsafe(50), unless_present=True)
        key = key_file.read_text().strip()
        if not key:
            self.problem(variable, f"unset, and the generated key's file {key_file} is empty: delete it to have a "
                                   f"new key made (everyone is logged out), or set {variable}")
        return key

    def seal(self) -> None:
        """Stop start-up with one line per bad variable, naming it."""
        try:
            self.env.seal()
        except EnvValidationError as error:
            for variable, messages in error.error_messages.items():
                text = "; ".join(str(m) for m in _flatten(messages))
                self.problem(variable, f"invalid value: {text}")
        if self.problems:
            for line in self.problems:
                print(f"configuration error: {line}", file=sys.stderr)
            raise SystemExit(2)


def _flatten(messages):
    if isinstance(messages, dict):
        for value in messages.values():
            yield from _flatten(value)
    elif isinstance(messages, list | tuple):
        for value in messages:
            yield from _flatten(value)
    else:
        yield messages


def positive(value: int) -> None:
    if value <= 0:
        raise ValidationError("must be a positive number")


def timezone_name(value: str) -> None:
    # Django refused a bad name only when settings were first read, with a traceback.
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a timezone name; use one such as 'Europe/Berlin' or 'UTC'") from None


# What a deployment beyond one machine must set: the embedded defaults (a SQLite file, a private
# Redis, a key generated into the data folder) belong to one machine and are not shared.
DEPLOYMENT_VARIABLES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS")
