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


TOKEN = "test-gateway-token-0123456789"


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", f"old-rotated-token,{TOKEN}")
    monkeypatch.delenv("TP_CAPITAL_API_KEY", raising=False)


@pytest.fixture
def api_server(database_url: str, api_env: None) -> Iterator[ThreadServer]:
    from tradingsystem.tpcapital.app import build_app

    server = ThreadServer(build_app(database_url)).start()
    yield server
    server.stop()


@pytest.fixture
def api(api_server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=30, headers={"X-Gateway-Token": TOKEN}) as client:
        yield client
