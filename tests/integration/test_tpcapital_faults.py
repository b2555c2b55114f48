"""TP Capital under faults: no token, database away, SIGTERM during a batch; reparse. (Fuzzing: tests/fault/.)"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.conftest import TOKEN
from tests.support.pg import PgCluster
from tests.support.servers import ProcessServer, ThreadServer, tradingsystem_argv, wait_until
from tradingsystem.core.embedded import free_port

CHANNEL = "-1001649127710"


def payload(message_id: int, text: str = "Ativo: PETR4\nCompra: 38,50\nAlvo 1: 40,00\nStop: 37,00") -> dict[str, Any]:
    return {"channelId": CHANNEL, "messageId": message_id, "timestamp": "2025-10-24T19:30:39Z", "text": text,
            "source": "import"}


def test_missing_gateway_token_is_fatal(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc = ProcessServer(tradingsystem_argv("serve", "api"), {"DATABASE_URL": database_url, "API_PORT": str(port)},
                         port, tmp_path / "api.log")
    proc.env = {k: v for k, v in proc.env.items() if k not in ("GATEWAY_SECRET_TOKEN", "API_SECRET_TOKEN")}
    proc.start()
    try:
        assert proc.wait(30) == 1
        assert "FATAL: GATEWAY_SECRET_TOKEN is required" in proc.output()
    finally:
        proc.stop()


def test_alias_token_variable_is_accepted(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"DATABASE_URL": database_url, "API_PORT": str(port), "API_SECRET_TOKEN": "alias-token"}
    proc = ProcessServer(tradingsystem_argv("serve", "api"), env, port, tmp_path / "api.log")
    proc.env.pop("GATEWAY_SECRET_TOKEN", None)
    proc.start()
    try:
        proc.wait_healthy(60, path="/health")
        ok = httpx.post(proc.url + "/ingest", json=payload(1), headers={"X-Gateway-Token": "alias-token"})
        assert ok.status_code == 200
        assert "alias-token" not in proc.output()  # only a fingerprint is logged
        assert "sha256:" in proc.output()
    finally:
        proc.stop()


def test_database_down_is_503_and_recovers(tmp_path: Path, api_env: None) -> None:
    from tradingsystem.tpcapital.app import build_app

    cluster = PgCluster(tmp_path, free_port())
    cluster.start()
    server = ThreadServer(build_app(cluster.url("postgres"))).start()
    try:
        with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}, timeout=30) as client:
            assert client.post("/ingest", json=payload(1)).status_code == 200
            cluster.stop()
            down = client.post("/ingest", json=payload(2))
            assert down.status_code == 503 and down.json() == {"error": "Database unavailable"}
            assert client.get("/signals").status_code == 503
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["database"] == "disconnected"
            cluster.start()
            wait_until(lambda: client.get("/health").status_code == 200, 30, message="recovery")
            # The gateway retries later: the same message now stores, exactly once.
            assert client.post("/ingest", json=payload(2)).json()["stored"] is True
            assert client.get("/signals").json()["count"] == 2
    finally:
        server.stop()
        cluster.stop()


def test_sigterm_during_a_batch_finishes_it(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"DATABASE_URL": database_url, "API_PORT": str(port), "GATEWAY_SECRET_TOKEN": TOKEN}
    proc = ProcessServer(tradingsystem_argv("serve", "api"), env, port, tmp_path / "api.log").start()
    loop = asyncio.new_event_loop()
    try:
        proc.wait_healthy(60, path="/health")
        conn: asyncpg.Connection = loop.run_until_complete(asyncpg.connect(database_url))
        loop.run_until_complete(conn.execute("BEGIN; LOCK TABLE tp_capital.messages IN ACCESS EXCLUSIVE MODE"))
        result: dict[str, httpx.Response] = {}
        batch = {"messages": [payload(i) for i in range(1, 501)]}
        sender = threading.Thread(target=lambda: result.update(r=httpx.post(
            proc.url + "/ingest/batch", json=batch, headers={"X-Gateway-Token": TOKEN}, timeout=60)))
        sender.start()
        wait_until(lambda: loop.run_until_complete(conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted")) > 0, 20, message="the batch to block")
        proc.signal(signal.SIGTERM)
        wait_until(lambda: "Shutting down" in proc.output(), 20, message="shutdown to begin")
        loop.run_until_complete(conn.execute("ROLLBACK"))
        sender.join(60)
        assert result["r"].status_code == 200
        assert sum(r["stored"] for r in result["r"].json()["results"]) == 500
        assert proc.wait(30) == 0
        assert "Graceful shutdown completed" in proc.output()
        assert loop.run_until_complete(conn.fetchval("SELECT count(*) FROM tp_capital.messages")) == 500
        loop.run_until_complete(conn.close())
    finally:
        loop.close()
        proc.stop()


@pytest.mark.asyncio
async def test_reparse_fixes_history_and_is_idempotent(api: httpx.Client, database_url: str) -> None:
    api.post("/ingest", json=payload(1))
    api.post("/ingest", json=payload(2, "PETR4 ALVO 1 ATINGIDO ✅ +3,9%") | {"timestamp": "2025-10-25T10:00:00Z"})
    api.post("/ingest", json=payload(3, "Bom dia!"))
    conn = await asyncpg.connect(database_url)
    try:
        # What an older, weaker parser would have left behind.
        await conn.execute("""UPDATE tp_capital.messages SET parsed = '{"kind": "noise", "reason": "incomplete"}'""")
        await conn.execute("DELETE FROM tp_capital.signal_events")
        await conn.execute("UPDATE tp_capital.signals SET buy_min = 99, deleted = false")
        for _ in range(2):
            result = subprocess.run(tradingsystem_argv("signals", "reparse"), env={"DATABASE_URL": database_url,
                                    "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            assert "Re-parsed 3 messages: 1 signals, 1 updates, 1 noise" in result.stdout
            signals = await conn.fetch("SELECT asset, buy_min, revision FROM tp_capital.signals")
            assert [(s["asset"], str(s["buy_min"]), s["revision"]) for s in signals] == [("PETR4", "38.50", 1)]
            events = await conn.fetch("SELECT event, target FROM tp_capital.signal_events")
            assert [(e["event"], e["target"]) for e in events] == [("target_hit", 1)]
    finally:
        await conn.close()
