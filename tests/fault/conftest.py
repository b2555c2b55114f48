"""Fixtures of the fault suite: one database and one TP Capital API shared by the cases that do not disturb them,
one log directory for every service process, and the results table written at the end of the run."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.fault.harness import DB_PASSWORD, DB_ROLE, Ledger, Services
from tests.support.pg import PgServer
from tests.support.servers import ProcessServer


@pytest.fixture(scope="session")
def fault_dir() -> Iterator[Path]:
    # Not under pytest's base temp (a concurrent run resets it to 0700 under the embedded PostgreSQL's feet).
    root = Path(tempfile.mkdtemp(prefix="ts-fault-"))
    (root / "logs").mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def services(fault_dir: Path) -> Iterator[Services]:
    instance = Services(fault_dir / "logs")
    yield instance
    instance.stop_all()


@pytest.fixture(scope="session")
def ledger() -> Iterator[Ledger]:
    instance = Ledger()
    yield instance
    if instance.rows:
        path = instance.write()
        print(f"\n[fault] results table: {path}")


def with_password(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}:{parts.port}"))


def create_owner(pg: PgServer, database: str, role: str, password: str) -> str:
    """A login role with a password that owns `database`: the services connect with a secret in their URL."""

    async def run() -> None:
        conn = await asyncpg.connect(pg.url("postgres"), timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD '{password}'")
            await conn.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        finally:
            await conn.close()

    asyncio.run(run())
    return with_password(pg.url(database), role, password)


@pytest.fixture(scope="session")
def fault_db(pg_cluster: PgServer) -> Iterator[str]:
    name = pg_cluster.create_database()
    yield create_owner(pg_cluster, name, DB_ROLE, DB_PASSWORD)
    pg_cluster.drop_database(name)


@pytest.fixture(scope="session")
def shared_api(services: Services, fault_db: str) -> ProcessServer:
    """The TP Capital API every case that leaves it running delivers to (each case has its own channel)."""
    api = services.api(fault_db, name="shared-api")
    api.wait_healthy(90, path="/health")
    return api
