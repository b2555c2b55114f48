"""The APIs on a real TimescaleDB (the project's image): without preload, and raw-message compression."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests.support.pg import ExternalServer
from tests.support.servers import ProcessServer, ThreadServer, tradingsystem_argv
from tests.support.timescaledb import TimescaleContainer, ensure_image

from tradingsystem.core.embedded import free_port

# Generous: a cold machine builds the images inside the first fixture that needs them (minutes, not a hang).
pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]

TOKEN = "timescale-test-token-0123456789"
CHANNEL = "-1001649127710"
SIGNAL_TEXT = "Swing Trade\nAtivo: PETR4\nCompra: 36,10 a 36,40\nAlvo 1: 38,00\nStop: 34,90"


@pytest.fixture(scope="module")
def timescale_image() -> str:
    return ensure_image()


@pytest.fixture(scope="module")
def timescaledb(timescale_image: str) -> Iterator[ExternalServer]:
    server = TimescaleContainer(timescale_image).start()
    try:
        yield ExternalServer(server.admin_url)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def not_preloaded(timescale_image: str) -> Iterator[ExternalServer]:
    # Installed (the extension's files are there) but not preloaded, as when an operator's own
    # postgresql.conf lacks shared_preload_libraries.
    server = TimescaleContainer(timescale_image, "-c", "shared_preload_libraries=").start()
    try:
        yield ExternalServer(server.admin_url)
    finally:
        server.stop()


def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def message(message_id: int, when: datetime, text: str = SIGNAL_TEXT) -> dict[str, Any]:
    return {"channelId": CHANNEL, "messageId": message_id, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "text": text, "source": "user", "chatTitle": "TP Capital"}


def test_the_image_preloads_and_creates_the_extension(timescaledb: ExternalServer) -> None:
    rows = fetch(timescaledb.admin_url, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    assert [r["extversion"] for r in rows] == ["2.28.3"]
    setting = fetch(timescaledb.admin_url, "SHOW shared_preload_libraries")
    assert setting[0][0] == "timescaledb"
    user = fetch(timescaledb.admin_url, "SELECT current_setting('server_version_num')::int / 10000 AS major")
    assert user[0]["major"] == 15


def test_api_runs_on_plain_postgresql_where_timescaledb_is_not_preloaded(not_preloaded: ExternalServer,
                                                                         tmp_path: Path) -> None:
    name = not_preloaded.create_database()
    url = not_preloaded.url(name)
    try:
        # The defect's trigger, first: the server offers the extension, and creating it ends the session.
        assert fetch(url, "SELECT name FROM pg_available_extensions WHERE name = 'timescaledb'")

        async def create_extension() -> tuple[str, bool]:
            conn = await asyncpg.connect(url, timeout=10)
            try:
                with pytest.raises(asyncpg.PostgresError) as caught:
                    await conn.execute("CREATE EXTENSION timescaledb")
                return str(caught.value), conn.is_closed()
            finally:
                await conn.close()

        error, closed = asyncio.run(create_extension())
        assert "must be preloaded" in error and closed

        port = free_port()
        env = {"DATABASE_URL": url, "API_PORT": str(port), "GATEWAY_SECRET_TOKEN": TOKEN, "DB_CONNECT_BASE_DELAY_S": "0.2"}
        server = ProcessServer(tradingsystem_argv("serve", "api"), env, port, tmp_path / "api.log").start()
        try:
            server.wait_healthy(90, path="/health")
            with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}, timeout=10) as client:
                stored = client.post("/ingest", json=message(1, datetime(2025, 10, 24, 19, 30, tzinfo=UTC)))
                assert stored.status_code == 200 and stored.json()["stored"] is True
                again = client.post("/ingest", json=message(1, datetime(2025, 10, 24, 19, 30, tzinfo=UTC)))
                assert again.json()["stored"] is False
                assert [s["asset"] for s in client.get("/signals").json()["data"]] == ["PETR4"]
        finally:
            server.stop()
        log = server.output()
        assert "not preloaded; continuing on plain PostgreSQL" in log
        assert "Traceback" not in log
        assert fetch(url, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'") == []
        assert len(fetch(url, "SELECT version FROM tp_capital.schema_migrations")) >= 1
    finally:
        not_preloaded.drop_database(name)


def test_migrations_make_hypertables(timescaledb: ExternalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradingsystem.tpcapital.app import build_app

    name = timescaledb.create_database()
    url = timescaledb.url(name)
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", TOKEN)
    server = ThreadServer(build_app(url)).start()
    try:
        rows = fetch(url, "SELECT hypertable_name FROM timescaledb_information.hypertables "
                          "WHERE hypertable_schema = 'tp_capital' ORDER BY 1")
        assert [r["hypertable_name"] for r in rows] == ["messages", "signal_events"]
    finally:
        server.stop()
        timescaledb.drop_database(name)


def compression_policy(url: str) -> list[asyncpg.Record]:
    return fetch(url, "SELECT job_id, config->>'compress_after' AS after FROM timescaledb_information.jobs "
                      "WHERE proc_name = 'policy_compression' AND hypertable_name = 'messages'")


def test_compression_policy_on_raw_messages(timescaledb: ExternalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradingsystem.tpcapital.app import build_app

    name = timescaledb.create_database()
    url = timescaledb.url(name)
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", TOKEN)
    old = datetime.now(UTC) - timedelta(days=60)
    try:
        # Off by default: no policy, nothing compressed.
        server = ThreadServer(build_app(url)).start()
        server.stop()
        assert compression_policy(url) == []

        monkeypatch.setenv("MESSAGES_COMPRESS_AFTER_DAYS", "7")
        server = ThreadServer(build_app(url)).start()
        try:
            with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}, timeout=30) as client:
                for message_id in (1, 2, 3):
                    assert client.post("/ingest", json=message(message_id, old)).json()["stored"] is True
                assert client.post("/ingest", json=message(4, datetime.now(UTC))).json()["stored"] is True

                [policy] = compression_policy(url)
                assert policy["after"] == "7 days"
                # The policy's own background run could take the chunk at the same moment ("columnstore policy
                # failure"): unschedule it, then run the very same job here.
                fetch(url, f"SELECT alter_job({policy['job_id']}, scheduled => false)")
                fetch(url, f"CALL run_job({policy['job_id']})")
                chunks = fetch(url, "SELECT is_compressed, range_end FROM timescaledb_information.chunks "
                                    "WHERE hypertable_name = 'messages' ORDER BY range_start")
                assert [c["is_compressed"] for c in chunks] == [True, False]

                # Exactly-once holds on compressed chunks: a redelivery is a duplicate, a new message is stored.
                assert client.post("/ingest", json=message(2, old)).json() == {
                    "success": True, "messageId": 2, "stored": False, "reason": "duplicate"}
                assert client.post("/ingest", json=message(5, old)).json()["stored"] is True
                batch = client.post("/ingest/batch", json={"messages": [message(3, old), message(6, old)]}).json()
                assert [r["stored"] for r in batch["results"]] == [False, True]
                counts = fetch(url, "SELECT message_id, count(*) AS n FROM tp_capital.messages GROUP BY 1 ORDER BY 1")
                assert [(r["message_id"], r["n"]) for r in counts] == [(i, 1) for i in range(1, 7)]
                assert client.get("/signals", params={"limit": 100}).json()["count"] == 6
        finally:
            server.stop()

        # The same setting again changes nothing; another value replaces the policy; 0 removes it.
        monkeypatch.setenv("MESSAGES_COMPRESS_AFTER_DAYS", "30")
        server = ThreadServer(build_app(url)).start()
        server.stop()
        assert [p["after"] for p in compression_policy(url)] == ["30 days"]
        monkeypatch.setenv("MESSAGES_COMPRESS_AFTER_DAYS", "0")
        server = ThreadServer(build_app(url)).start()
        try:
            assert compression_policy(url) == []
            with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}, timeout=30) as client:
                assert client.post("/ingest", json=message(1, old)).json()["stored"] is False
        finally:
            server.stop()
    finally:
        timescaledb.drop_database(name)
