"""Fixtures shared by every test: one real embedded PostgreSQL per run, a fresh database per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

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


@pytest.fixture(autouse=True)
def _structlog_configuration() -> Iterator[None]:
    """A test that runs a service in-process configures its logging (level filter included); the next test must
    not inherit it, or its info lines vanish depending on which tests ran before."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


CONTAINER_SUITE = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `container` tests run whenever a Docker engine answers; without one they are deselected (one line
    says so), unless TRADINGSYSTEM_REQUIRE_CONTAINERS=1 (CI), where they stay selected and fail."""
    from tests.support.compose import REQUIRE_VARIABLE, engine_problem, required

    selected = [item for item in items if item.get_closest_marker("container")]
    if not selected or required():
        return
    problem = engine_problem()
    if problem is None:
        return
    items[:] = [item for item in items if not item.get_closest_marker("container")]
    config.hook.pytest_deselected(items=selected)
    config.stash[CONTAINER_SUITE] = (
        f"container suite not run ({len(selected)} tests deselected): {problem}; start an engine "
        f"(`sudo tools/ci/docker-engine.sh` on Debian) or set {REQUIRE_VARIABLE}=1 to make its absence a failure"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    message = config.stash.get(CONTAINER_SUITE, None)
    if message:
        terminalreporter.write_line(message, yellow=True, bold=True)
