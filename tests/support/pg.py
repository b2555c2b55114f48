"""A real PostgreSQL for the tests: one embedded cluster per test run (or an external server), one fresh database
per test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tradingsystem.core.embedded import EmbeddedPostgres, bin_dir


class PgCluster:
    def __init__(self, root: Path, port: int) -> None:
        self.pg = EmbeddedPostgres(root / "pgdata", port=port, database="postgres")

    def start(self) -> None:
        self.pg.start()

    def stop(self) -> None:
        self.pg.stop("immediate")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self.pg._pg("psql", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres", "-d", database,
                             "-v", "ON_ERROR_STOP=1", "-tAc", sql)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout.strip()

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg.port}/{database}"


# An admin URL (a role that may create databases) of a server the tests use instead of the embedded one:
# the `make test` pass on TimescaleDB sets it.
EXTERNAL_VARIABLE = "TRADINGSYSTEM_TEST_PG_ADMIN_URL"


class PgServer(Protocol):
    def create_database(self) -> str: ...
    def drop_database(self, name: str) -> None: ...
    def url(self, database: str) -> str: ...


class ExternalServer:
    """A PostgreSQL the tests did not start (e.g. TimescaleDB in a container): databases are made and dropped there."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def _admin(self, sql: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{database}"))


def external_admin_url() -> str | None:
    return os.environ.get(EXTERNAL_VARIABLE) or None


def pg_binary(tool: str) -> str:
    return str(bin_dir() / tool)


def run_pg_tool(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)
