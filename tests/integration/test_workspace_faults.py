"""Workspace under faults: the database away at start and mid-flight, SIGTERM mid-request, limits. (Fuzzing:
tests/fault/.)"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.pg import PgCluster
from tests.support.servers import ProcessServer, ThreadServer, tradingsystem_argv, wait_until
from tradingsystem.core.embedded import free_port

ITEM = {"title": "Revisar stops", "category": "gestao-riscos", "priority": "medium"}


@pytest.fixture
def own_cluster(tmp_path: Path) -> PgCluster:
    cluster = PgCluster(tmp_path, free_port())
    cluster.pg.init()
    return cluster


def test_missing_database_settings_are_fatal(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "TIMESCALEDB_HOST": "", "WORKSPACE_PORT": str(free_port())}
    proc = ProcessServer(tradingsystem_argv("serve", "workspace"), env, 0, tmp_path / "ws.log")
    proc.env = {k: v for k, v in proc.env.items() if not k.startswith(("DATABASE_URL", "TIMESCALEDB_"))}
    proc.start()
    assert proc.wait(30) == 1
    assert "FATAL: TIMESCALEDB_HOST is required" in proc.output()
    proc.stop()


def test_database_never_arrives_exits_1(own_cluster: PgCluster, tmp_path: Path) -> None:
    env = {"DATABASE_URL": own_cluster.url("postgres"), "WORKSPACE_PORT": str(free_port()),
           "DB_CONNECT_BASE_DELAY_S": "0.05"}
    proc = ProcessServer(tradingsystem_argv("serve", "workspace"), env, 0, tmp_path / "ws.log").start()
    try:
        assert proc.wait(60) == 1
        assert "Database connection failed after retries" in proc.output()
    finally:
        proc.stop()


def test_waits_for_the_database_at_startup(own_cluster: PgCluster, tmp_path: Path) -> None:
    port = free_port()
    env = {"DATABASE_URL": own_cluster.url("postgres"), "WORKSPACE_PORT": str(port)}
    proc = ProcessServer(tradingsystem_argv("serve", "workspace"), env, port, tmp_path / "ws.log").start()
    try:
        wait_until(lambda: "Database connection attempt failed" in proc.output(), 30,
                   message="a failed connection attempt")
        own_cluster.start()
        proc.wait_healthy(60, path="/health")
        assert httpx.get(proc.url + "/health").json()["database"] == "connected"
    finally:
        proc.stop()
        own_cluster.stop()


def test_database_down_mid_flight_503_then_recovers(own_cluster: PgCluster) -> None:
    from tradingsystem.workspace.app import build_app

    own_cluster.start()
    server = ThreadServer(build_app(own_cluster.url("postgres"))).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/api/items", json=ITEM).status_code == 201
            own_cluster.stop()
            down = client.get("/api/items")
            assert down.status_code == 503
            assert down.json() == {"success": False, "error": "Database unavailable"}
            health = client.get("/health")
            assert health.status_code == 503
            assert health.json()["status"] == "unhealthy" and health.json()["database"] == "disconnected"
            assert "workspace_database_connection_status 0.0" in client.get("/metrics").text
            own_cluster.start()
            wait_until(lambda: client.get("/health").status_code == 200, 30, message="recovery")
            back = client.get("/api/items")
            assert back.status_code == 200 and back.json()["count"] == 1
    finally:
        server.stop()
        own_cluster.stop()


async def _lock_items(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await conn.execute("BEGIN; LOCK TABLE workspace.items IN ACCESS EXCLUSIVE MODE")
    return conn


def test_sigterm_finishes_the_request_in_flight(database_url: str, tmp_path: Path) -> None:
    import asyncio

    port = free_port()
    env = {"DATABASE_URL": database_url, "WORKSPACE_PORT": str(port)}
    proc = ProcessServer(tradingsystem_argv("serve", "workspace"), env, port, tmp_path / "ws.log").start()
    try:
        proc.wait_healthy(60, path="/health")
        loop = asyncio.new_event_loop()
        conn = loop.run_until_complete(_lock_items(database_url))
        result: dict[str, httpx.Response] = {}
        request = threading.Thread(target=lambda: result.update(r=httpx.get(proc.url + "/api/items", timeout=30)))
        request.start()
        wait_until(lambda: loop.run_until_complete(conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted")) > 0, 20, message="the request to block")
        proc.signal(signal.SIGTERM)
        wait_until(lambda: "Shutting down" in proc.output(), 20, message="shutdown to begin")
        loop.run_until_complete(conn.execute("ROLLBACK"))
        loop.run_until_complete(conn.close())
        loop.close()
        request.join(30)
        assert result["r"].status_code == 200
        assert proc.wait(30) == 0
        assert "Graceful shutdown completed" in proc.output()
    finally:
        proc.stop()


def test_rate_limit_answers_429_with_retry_after(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradingsystem.workspace.app import build_app

    monkeypatch.setenv("RATE_LIMIT_MAX", "5")
    monkeypatch.setenv("RATE_LIMIT_WINDOW_MS", "60000")
    server = ThreadServer(build_app(database_url)).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            codes = [client.get("/api/categories").status_code for _ in range(5)]
            assert codes == [200] * 5
            limited = client.get("/api/categories")
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert limited.json()["error"] == "Too Many Requests"
            assert limited.json()["retryAfter"] == int(limited.headers["retry-after"])
            assert client.get("/health").status_code == 200  # never limited
            assert client.get("/metrics").status_code == 200
    finally:
        server.stop()
