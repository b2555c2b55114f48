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


@pytest.fixture
def idle_gateway(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real gateway with no Telegram source, whose control surface the API reaches through GATEWAY_URL."""
    from tradingsystem.core.embedded import free_port
    from tradingsystem.gateway.service import GatewayService, create_gateway_app
    from tradingsystem.gateway.settings import GatewaySettings

    data_dir = tmp_path_factory.mktemp("gateway") / "data"
    data_dir.mkdir(mode=0o700)
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None, gateway_data_dir=data_dir, gateway_secret_token=TOKEN, gateway_port=free_port(),
        api_endpoint=f"http://127.0.0.1:{free_port()}/ingest")
    server = ThreadServer(create_gateway_app(GatewayService(settings)), settings.gateway_port).start()
    monkeypatch.setenv("GATEWAY_URL", server.url)
    yield server.url
    server.stop()
