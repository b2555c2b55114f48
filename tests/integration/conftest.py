"""Fixtures for service-level tests: a service app served for real on loopback against a fresh database."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ThreadServer


@pytest.fixture
def workspace(database_url: str) -> Iterator[httpx.Client]:
    from tradingsystem.workspace.app import build_app

    server = ThreadServer(build_app(database_url)).start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
    server.stop()
