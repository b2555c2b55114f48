"""Fixtures shared by every test: one real embedded PostgreSQL per run, a fresh database per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import ExternalServer, PgCluster, PgServer, external_admin_url
from tradingsystem.core.embedded import free_port


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgServer]:
    admin_url = external_admin_url()
    if admin_url:
        yield ExternalServer(admin_url)
        return
    # Outside pytest's own temporary tree: pytest prunes old runs' directories (and tightens their modes),
    # which must never pull a data directory from under a running server.
    root = Path(tempfile.mkdtemp(prefix="tradingsystem-test-pg-"))
    cluster = PgCluster(root, free_port())
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(pg_cluster: PgServer) -> Iterator[str]:
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)
