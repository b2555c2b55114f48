"""pytest plugin of the pass on an external server (`-p tests.support.external_pg`): the tests that use the shared
database fixture, and nothing that starts its own embedded cluster or needs the container suite."""

from __future__ import annotations

import pytest

from tests.support.pg import EXTERNAL_VARIABLE, external_admin_url


def pytest_configure(config: pytest.Config) -> None:
    if external_admin_url() is None:
        raise pytest.UsageError(f"-p tests.support.external_pg needs {EXTERNAL_VARIABLE} (an admin URL)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def wanted(item: pytest.Item) -> bool:
        uses_fixture = "database_url" in getattr(item, "fixturenames", ())
        return uses_fixture and item.get_closest_marker("container") is None

    kept = [item for item in items if wanted(item)]
    dropped = [item for item in items if not wanted(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
