"""A real PostgreSQL for the tests: one embedded cluster per test run, one fresh database per test."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

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


def pg_binary(tool: str) -> str:
    return str(bin_dir() / tool)


def run_pg_tool(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)
