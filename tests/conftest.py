"""Fixtures shared by every test: one real embedded PostgreSQL per run, a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import PgCluster
from tradingsystem.core.embedded import free_port


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    root: Path = tmp_path_factory.mktemp("pg")
    cluster = PgCluster(root, free_port())
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def database_url(pg_cluster: PgCluster) -> Iterator[str]:
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)
