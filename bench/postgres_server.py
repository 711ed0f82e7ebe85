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
