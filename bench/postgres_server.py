"""The PostgreSQL server a benchmark runs on: whether it answers, administrative statements
(CREATE/DROP DATABASE), and the URL of a scratch database on it. Each benchmark makes and
drops its own databases, never touching the one named in the server URL."""

import psycopg


class PostgresServer:
    def __init__(self, server_url: str) -> None:
        self.server_url = server_url

    def database_url(self, name: str) -> str:
        return self.server_url.rsplit("/", 1)[0] + "/" + name

    def reachable(self) -> bool:
        try:
            psycopg.connect(self.server_url, connect_timeout=5).close()
        except psycopg.OperationalError:
            return False
        return True

    def admin(self, *statements: str) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as db:
            for statement in statements:
                db.execute(statement)


class ReaderRole(PostgresServer):
    """A login role with no rights past reading, as reports require of the role their SQL runs
    as (README, "A reader role for reports"); made for one run and dropped after it."""

    def __init__(self, server_url: str, name: str) -> None:
        super().__init__(server_url)
        self.name = name

    def create(self, *, database: str | None = None, tables: tuple[str, ...] = ()) -> str:
        """Make the role, with SELECT on `tables` of `database` (default: the server URL's); its URL there."""
        self.drop()
        self.admin(f"CREATE ROLE {self.name} LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS",
                   f"ALTER ROLE {self.name} SET default_transaction_read_only = on",
                   f"ALTER ROLE {self.name} SET statement_timeout = '10min'")
        url = self.database_url(database) if database else self.server_url
        if tables:
            with psycopg.connect(url, autocommit=True) as db:
                db.execute(f"GRANT SELECT ON {', '.join(tables)} TO {self.name}")
        return f"postgresql://{self.name}@{url.split('@', 1)[1]}"

    def drop(self) -> None:
        """Drop the role; the database it was granted reading in must be dropped first."""
        self.admin(f"DROP ROLE IF EXISTS {self.name}")
