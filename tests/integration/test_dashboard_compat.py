"""What the existing React dashboard sends and reads, endpoint by endpoint, against the running services.

The dashboard runs on http://localhost:3103 and reaches the services in one of two ways:

| mode | dashboard calls | the service receives |
|---|---|---|
| proxied | `/api/tp-capital/<path>` | `<path>` on 4005 (the proxy strips the prefix) |
| proxied | `/api/workspace/<path>` | `/api/<path>` on 3200 (the proxy's target ends in `/api`) |
| direct  | `http://localhost:4005/<path>` | `<path>` |
| direct  | `http://localhost:3200/api/<path>` | `/api/<path>`; proxies that strip everything send `/<path>` |

Mutations send `Content-Type: application/json` and, where the operator configured one, `X-API-Key`.
Each test below names the calls of one screen, the parameters it sends and the fields it reads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from starlette.requests import Request

from tests.integration.conftest import TOKEN
from tests.support.fake_bot_api import FakeBotApi
from tests.support.fake_telethon import TelegramWorld, channel_message, write_session
from tests.support.servers import ThreadServer, wait_until
from tradingsystem.core.embedded import free_port
from tradingsystem.core.errors import Forbidden, Unauthorized
from tradingsystem.gateway.control import ControlGuard, parse_networks
from tradingsystem.gateway.service import GatewayService, create_gateway_app
from tradingsystem.gateway.sessions import SessionStore
from tradingsystem.gateway.settings import GatewaySettings
from tradingsystem.gateway.sources.bot import BotSource
from tradingsystem.gateway.sources.user import UserSource
from tradingsystem.gateway.types import CursorReader, Monitored, Source

DASHBOARD = "http://localhost:3103"
CHANNEL = 1649127710
MARKED = "-1001649127710"
API_KEY = "dashboard-key-0123"
T = TypeVar("T")

SIGNAL = "🟢Swing Trade\n\nAtivo: BOVAW32\nCompra: 1,04 a 1,06\nAlvo 1: 1,15\nStop: 0,70"


def tp(path: str) -> str:
    """The path TP Capital receives for a dashboard call `/api/tp-capital<path>` (and in direct mode)."""
    return path


def ws_paths(path: str) -> list[str]:
    """The paths the Workspace receives for `/api/workspace<path>`: proxied/direct, and prefix-stripping proxies."""
    return [f"/api{path}", path]


def message(message_id: int, text: str, when: str = "2025-10-24T19:30:39Z") -> dict[str, Any]:
    return {"channelId": MARKED, "messageId": message_id, "timestamp": when, "text": text, "source": "user",
            "chatTitle": "TP Capital | Sinais"}


# -- servers ---------------------------------------------------------------------------------------------


def api_server(database_url: str, monkeypatch: pytest.MonkeyPatch, *, gateway_url: str | None = None,
               api_key: str | None = None) -> ThreadServer:
    from tradingsystem.tpcapital.app import build_app

    # Mid-rotation: the API still lists the old token first, the gateway knows only the new one.
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", f"old-rotated-token,{TOKEN}")
    monkeypatch.setenv("GATEWAY_URL", gateway_url or f"http://127.0.0.1:{free_port()}")
    if api_key:
        monkeypatch.setenv("TP_CAPITAL_API_KEY", api_key)
    else:
        monkeypatch.delenv("TP_CAPITAL_API_KEY", raising=False)
    monkeypatch.delenv("CORS_ORIGIN", raising=False)
    return ThreadServer(build_app(database_url)).start()


class Gateway:
    """The real gateway app on loopback; its Telegram sources are built by `sources` from the real registry."""

    def __init__(self, tmp_path: Path, api_url: str, port: int,
                 sources: Callable[[GatewaySettings, Monitored, CursorReader], list[Source]], **extra: Any) -> None:
        self.settings = GatewaySettings(  # type: ignore[call-arg]
            _env_file=None, gateway_data_dir=tmp_path / "gateway", api_endpoint=api_url + "/ingest",
            gateway_secret_token=TOKEN, base_retry_delay_ms=20, api_timeout_ms=5000, gateway_port=port,
            **extra)
        self.settings.gateway_data_dir.mkdir(mode=0o700)
        self.service = GatewayService(self.settings, source_factory=sources)
        self.server = ThreadServer(create_gateway_app(self.service), self.settings.gateway_port)

    @property
    def url(self) -> str:
        return self.server.url


class LoopThread:
    """An event loop in a thread, for the asyncio stand-in Bot API server next to threaded HTTP servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def world() -> TelegramWorld:
    return TelegramWorld()


@pytest.fixture
def stack(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
          world: TelegramWorld) -> Iterator[tuple[httpx.Client, Gateway]]:
    """API + gateway with a user account (scripted Telegram, real Telethon messages) monitoring one channel."""
    gateway_port = free_port()
    api = api_server(database_url, monkeypatch, gateway_url=f"http://127.0.0.1:{gateway_port}")
    store = SessionStore(tmp_path / "gateway" / ".session", "telegram-gateway")

    def sources(_: GatewaySettings, monitored: Monitored, cursors: CursorReader) -> list[Source]:
        return [UserSource(store, world.factory, monitored, cursors, session_poll_interval=0.05,
                           backoff_initial=0.05)]

    gateway = Gateway(tmp_path, api.url, gateway_port, sources, telegram_source_channel_ids=MARKED)
    write_session(store)
    gateway.server.start()
    try:
        with httpx.Client(base_url=api.url, timeout=60, headers={"Origin": DASHBOARD}) as client:
            wait_until(lambda: gateway.service.telegram_state() == "connected", message="user account connected")
            yield client, gateway
    finally:
        gateway.server.stop()
        api.stop()


# -- TP Capital: the signals table ---------------------------------------------------------------------


def test_signals_table_filters_rows_and_delete_by_ingested_at(database_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Signals screen: `GET /signals?limit&channel&type&search&from&to`, rows keyed by `ingested_at`;
    the row's delete button sends `DELETE /signals {"ingestedAt": row.ingested_at}` and reads `status`."""
    server = api_server(database_url, monkeypatch)
    try:
        with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}) as client:
            batch = [message(i, SIGNAL.replace("BOVAW32", asset)) for i, asset in
                     enumerate(["BOVAW32", "PETR4", "VALE3", "ITUB4"], start=1)]
            assert client.post("/ingest/batch", json={"messages": batch}).status_code == 200
            response = client.get(tp("/signals"), params={"limit": 500, "channel": MARKED, "type": "Swing Trade",
                                                          "search": "", "from": "2025-10-01", "to": "2025-10-31"})
            assert response.status_code == 200
            rows = response.json()["data"]
            assert len(rows) == 4
            for row in rows:
                assert {"id", "ts", "channel", "signal_type", "asset", "buy_min", "buy_max", "target_1", "target_2",
                        "target_final", "stop", "raw_message", "source", "ingested_at"} <= set(row)
            # One batch, four rows, four keys.
            stamps = [row["ingested_at"] for row in rows]
            assert len(set(stamps)) == 4 and all(s.endswith("Z") for s in stamps)

            victim = next(r for r in rows if r["asset"] == "PETR4")
            deleted = client.request("DELETE", tp("/signals"), json={"ingestedAt": victim["ingested_at"]})
            assert deleted.status_code == 200 and deleted.json() == {"status": "ok"}
            assets = [r["asset"] for r in client.get(tp("/signals")).json()["data"]]
            assert "PETR4" not in assets and len(assets) == 3
            again = client.request("DELETE", tp("/signals"), json={"ingestedAt": victim["ingested_at"]})
            assert again.status_code == 200  # soft-deleted rows keep their stamp; deleting again is harmless
            missing = client.request("DELETE", tp("/signals"), json={"ingestedAt": "2001-01-01T00:00:00Z"})
            assert missing.status_code == 404 and missing.json() == {"error": "Signal not found"}
            bad = client.request("DELETE", tp("/signals"), json={})
            assert bad.status_code == 400 and bad.json()["details"] == ["ingestedAt is required"]
            for nonsense in (10**30, "9999-12-31T23:00:00-05:00", "yesterday", True, [1]):
                refused = client.request("DELETE", tp("/signals"), json={"ingestedAt": nonsense})
                assert refused.status_code == 400, nonsense
    finally:
        server.stop()


def test_stamps_stay_distinct_across_concurrent_batches(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server = api_server(database_url, monkeypatch)
    try:
        def send(start: int) -> None:
            with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}, timeout=60) as client:
                batch = [message(start + i, SIGNAL.replace("BOVAW32", f"PETR{i % 9 + 1}")) for i in range(200)]
                assert client.post("/ingest/batch", json={"messages": batch}).status_code == 200

        threads = [threading.Thread(target=send, args=(n * 1000,)) for n in range(1, 4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        rows = httpx.get(server.url + "/signals", params={"limit": 1000}).json()["data"]
        assert len(rows) == 600 and len({r["ingested_at"] for r in rows}) == 600
    finally:
        server.stop()


def test_delete_by_ingested_at_needs_the_api_key_when_one_is_set(database_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    server = api_server(database_url, monkeypatch, api_key=API_KEY)
    try:
        with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}) as client:
            client.post("/ingest", json=message(1, SIGNAL))
            stamp = client.get("/signals").json()["data"][0]["ingested_at"]
            assert client.request("DELETE", "/signals", json={"ingestedAt": stamp}).status_code == 401
            assert client.request("DELETE", "/signals", json={"ingestedAt": stamp},
                                  headers={"X-API-Key": "wrong"}).status_code == 401
            ok = client.request("DELETE", "/signals", json={"ingestedAt": stamp}, headers={"X-API-Key": API_KEY})
            assert ok.json() == {"status": "ok"}
            for method, path in (("POST", "/telegram/channels"), ("PUT", "/telegram/channels/x"),
                                 ("DELETE", "/telegram/channels/x"), ("POST", "/sync-messages"),
                                 ("POST", "/reload-channels"), ("POST", "/telegram/bots")):
                assert client.request(method, path, json={}).status_code == 401, (method, path)
    finally:
        server.stop()


# -- TP Capital: channels, bots, forwarded messages, logs --------------------------------------------------


def test_channel_registry_under_both_paths(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels screen: `/telegram-channels` (this API) and `/telegram/channels` (older builds)."""
    server = api_server(database_url, monkeypatch)
    try:
        with httpx.Client(base_url=server.url) as client:
            created = client.post(tp("/telegram-channels"), json={"label": "TP Capital", "channel_id": MARKED,
                                                                   "channel_type": "source", "description": "Sinais"})
            assert created.status_code == 201
            body = created.json()
            assert body["success"] is True and body["channel"] == body["data"] and body["channel"]["label"] == "TP Capital"
            pk = body["channel"]["id"]
            assert client.put(tp(f"/telegram-channels/{pk}"), json={"description": "Sinais B3"}).json()["data"][
                "description"] == "Sinais B3"
            assert client.delete(tp(f"/telegram-channels/{pk}")).json() == {"success": True, "id": pk}

            # Older builds: numbers for channel ids, `{"status": "ok", "id"}` for writes, `{"data", "timestamp"}`.
            old = client.post(tp("/telegram/channels"), json={"label": "Espelho", "channel_id": -1002000000001,
                                                              "channel_type": "destination", "description": ""})
            assert old.status_code == 201 and old.json()["status"] == "ok"
            old_id = old.json()["id"]
            listed = client.get(tp("/telegram/channels")).json()
            assert set(listed) == {"data", "timestamp"}
            assert [(c["id"], c["channel_id"]) for c in listed["data"]] == [(old_id, "-1002000000001")]
            assert client.put(tp(f"/telegram/channels/{old_id}"),
                              json={"status": "inactive", "signal_count": 3, "last_signal": None}).json() == {
                "status": "ok", "id": old_id}
            assert client.get(tp(f"/telegram-channels/{old_id}")).json()["data"]["status"] == "inactive"
            assert client.delete(tp(f"/telegram/channels/{old_id}")).json() == {"status": "ok", "id": old_id}
            assert client.delete(tp(f"/telegram/channels/{old_id}")).status_code == 404
            assert client.post(tp("/telegram/channels"), json={"label": "x", "channel_id": "abc"}).status_code == 400
    finally:
        server.stop()


def test_forwarded_messages_carry_the_old_aliases(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forwarded-messages screen: `GET /forwarded-messages?limit&channelId` reads `ts`, `source_channel_id`,
    `source_channel_name`, `forwarded_at`, `message_text`."""
    server = api_server(database_url, monkeypatch)
    try:
        with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}) as client:
            client.post("/ingest", json=message(7, "Bom dia, pessoal!"))
            rows = client.get(tp("/forwarded-messages"), params={"limit": 50, "channelId": MARKED}).json()["data"]
            assert len(rows) == 1
            row = rows[0]
            assert row["ts"] == 1761334239000 and row["source_channel_id"] == MARKED
            assert row["source_channel_name"] == "TP Capital | Sinais"
            assert row["forwarded_at"] == row["received_at"] and row["message_text"] == "Bom dia, pessoal!"
            logs = client.get(tp("/logs"), params={"limit": 100, "level": "info"})
            assert logs.status_code == 200 and isinstance(logs.json()["data"], list)
    finally:
        server.stop()


def test_gateway_down_answers_503_with_the_dashboards_message(database_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = api_server(database_url, monkeypatch)  # GATEWAY_URL points at a port nobody listens on
    try:
        with httpx.Client(base_url=server.url) as client:
            sync = client.post(tp("/sync-messages"))
            assert sync.status_code == 503
            assert sync.json()["success"] is False
            assert sync.json()["message"].startswith("Telegram Gateway não está acessível")
            bots = client.get(tp("/telegram/bots"))
            assert bots.status_code == 503 and "Telegram Gateway" in bots.json()["error"]
            assert client.post(tp("/reload-channels")).status_code == 503
            client.post(tp("/telegram-channels"), json={"label": "TP Capital", "channel_id": MARKED})
            config = client.get(tp("/config/channels")).json()
            # The registry is this API's own data; what the gateway configures is missing, and said to be.
            assert config["gateway"] == "unreachable"
            assert config["data"] == [{"channelId": MARKED, "type": "source", "origin": "registry",
                                       "label": "TP Capital"}]
    finally:
        server.stop()


# -- "Checar Mensagens": the history sync through the gateway ---------------------------------------------


def test_sync_reads_history_through_the_journal_into_the_database(
        stack: tuple[httpx.Client, Gateway], world: TelegramWorld) -> None:
    """`POST /sync-messages` (no body) → `success`, `message`, `data.totalMessagesSynced`, `data.messagesSynced`,
    `data.totalMessagesSaved`, `data.channelsSynced[].{channelId,label,messagesSynced}`, `data.timestamp`."""
    client, gateway = stack
    client.post(tp("/telegram-channels"), json={"label": "TP Capital (registro)", "channel_id": MARKED})
    for n in range(1, 4):
        world.post(int(MARKED), channel_message(CHANNEL, n, SIGNAL if n == 2 else f"mensagem {n}", minutes=n))

    response = client.post(tp("/sync-messages"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and "3 mensagem(ns)" in body["message"]
    data = body["data"]
    assert data["totalMessagesSynced"] == 3 and data["messagesSynced"] == 3 and data["totalMessagesSaved"] == 3
    assert data["channelsSynced"] == [{"channelId": MARKED, "label": "TP Capital (registro)", "messagesSynced": 3,
                                       "messagesSaved": 3}]
    assert data["timestamp"].endswith("Z")
    # Nothing bypassed the journal: the messages reach the database through the publisher.
    wait_until(lambda: len(client.get("/forwarded-messages").json()["data"]) == 3, message="synced messages stored")
    assert [s["message_id"] for s in client.get("/signals").json()["data"]] == [2]
    wait_until(lambda: gateway.service.cursors.last_acknowledged(MARKED) == 3, message="cursor acknowledged")

    # The next sync reads from the cursor: only what came after it.
    world.post(int(MARKED), channel_message(CHANNEL, 4, "mensagem 4", minutes=4))
    again = client.post(tp("/sync-messages")).json()
    assert again["data"]["totalMessagesSynced"] == 1
    assert world.iter_calls[-1] == (int(MARKED), 3)
    wait_until(lambda: gateway.service.cursors.last_acknowledged(MARKED) == 4, message="cursor acknowledged")
    nothing = client.post(tp("/sync-messages")).json()
    assert nothing["success"] is True and nothing["message"] == "Todas as mensagens estão sincronizadas"


def test_sync_reads_at_most_500_messages_per_channel(stack: tuple[httpx.Client, Gateway],
                                                     world: TelegramWorld) -> None:
    client, _ = stack
    for n in range(1, 521):
        world.post(int(MARKED), channel_message(CHANNEL, n, f"mensagem {n}"))
    data = client.post(tp("/sync-messages")).json()["data"]
    assert data["totalMessagesSynced"] == 500
    assert world.iter_limits[-1] == (int(MARKED), 500, False)  # the latest 500, without a cursor
    wait_until(lambda: client.get("/forwarded-messages", params={"limit": 1000}).json()["data"].__len__() == 500,
               timeout=60, message="500 messages stored")
    ids = [m["message_id"] for m in client.get("/forwarded-messages", params={"limit": 1000}).json()["data"]]
    assert min(ids) == 21 and max(ids) == 520


def test_gateway_control_surface_needs_the_token(stack: tuple[httpx.Client, Gateway]) -> None:
    _, gateway = stack
    assert httpx.post(gateway.url + "/control/sync").status_code == 401
    assert httpx.post(gateway.url + "/control/sync", headers={"X-Gateway-Token": "nope"}).status_code == 401
    assert httpx.get(gateway.url + "/control/status", headers={"X-Gateway-Token": TOKEN}).status_code == 200
    status = httpx.get(gateway.url + "/control/status", headers={"X-Gateway-Token": TOKEN}).json()
    assert status["channels"]["configured"] == [MARKED] and status["bots"] == []


def test_control_guard_refuses_other_addresses() -> None:
    def request_from(host: str) -> Request:
        return Request({"type": "http", "method": "POST", "path": "/control/sync", "headers": [],
                        "client": (host, 40000)})

    guard = ControlGuard(["a-token", TOKEN], parse_networks("172.17.0.0/16"))
    guard.check(request_from("127.0.0.1"), TOKEN)
    guard.check(request_from("::1"), "a-token")
    guard.check(request_from("172.17.0.2"), TOKEN)
    with pytest.raises(Forbidden):
        guard.check(request_from("10.1.2.3"), TOKEN)
    with pytest.raises(Unauthorized):
        guard.check(request_from("127.0.0.1"), "a-toke")
    with pytest.raises(ValueError):
        parse_networks("not-a-network")


def test_bot_only_gateway_lists_its_bot_and_says_bots_cannot_read_history(
        database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Bots screen: `GET /telegram/bots` reads `username`, `bot_type`, `status`, `last_seen`; writes that would
    store a token answer 409 and say where tokens are configured."""
    loop = LoopThread()
    bot_api = loop.run(FakeBotApi().start())
    gateway_port = free_port()
    api = api_server(database_url, monkeypatch, gateway_url=f"http://127.0.0.1:{gateway_port}")

    def sources(_: GatewaySettings, monitored: Monitored, __: CursorReader) -> list[Source]:
        return [BotSource(bot_api.token, monitored, api_url=bot_api.base_url, poll_timeout=1)]

    gateway = Gateway(tmp_path, api.url, gateway_port, sources, telegram_source_channel_ids=MARKED)
    gateway.server.start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            wait_until(lambda: gateway.service.telegram_state() == "connected", message="bot connected")
            wait_until(lambda: client.get(tp("/telegram/bots")).json()["data"][0]["last_seen"] is not None,
                       message="bot seen")
            bots = client.get(tp("/telegram/bots"))
            assert bots.status_code == 200
            bot = bots.json()["data"][0]
            assert bot["username"] and bot["bot_type"] == "ingestion" and bot["status"] == "connected"
            assert bot_api.token not in bots.text

            sync = client.post(tp("/sync-messages"))
            assert sync.status_code == 409
            assert sync.json()["success"] is False and "bots não podem ler o histórico" in sync.json()["message"]

            for method, path in (("POST", "/telegram/bots"), ("PUT", f"/telegram/bots/{bot['id']}"),
                                 ("DELETE", f"/telegram/bots/{bot['id']}")):
                refused = client.request(method, tp(path), json={"username": "x_bot", "token": "123:abc"})
                assert refused.status_code == 409
                assert "TELEGRAM_INGESTION_BOT_TOKEN" in refused.json()["error"]

            config = client.get(tp("/config/channels")).json()
            assert config["gateway"] == "reachable"
            assert {"channelId": MARKED, "type": "source", "origin": "env", "label": None} in config["data"]
            reloaded = client.post(tp("/reload-channels")).json()
            assert reloaded == {"success": True, "channels": [MARKED]}
    finally:
        gateway.server.stop()
        api.stop()
        loop.run(bot_api.stop())
        loop.stop()


# -- Workspace: items, kanban, categories ----------------------------------------------------------------


def test_categories_carry_id_and_delete_answers_json(workspace: httpx.Client) -> None:
    """Categories screen: lists `GET /categories`, keys rows by `id`; edit `PUT /categories/{id}`, toggle
    `PATCH /categories/{id}/toggle`, delete `DELETE /categories/{id}` reading `success`."""
    for prefix_path in ws_paths(""):
        listed = workspace.get(f"{prefix_path}/categories").json()
        assert listed["success"] is True
        assert all(c["id"] == c["name"] for c in listed["data"])
    for n, base in enumerate(ws_paths("/categories")):
        name = f"infra-{n}"
        created = workspace.post(base, json={"name": name, "display_name": "Infra", "color": "#112233"}).json()
        assert created["data"]["id"] == name
        cid = created["data"]["id"]
        assert workspace.put(f"{base}/{cid}", json={"display_name": "Infraestrutura"}).json()["data"]["id"] == cid
        assert workspace.patch(f"{base}/{cid}/toggle").json()["data"]["is_active"] is False
        deleted = workspace.delete(f"{base}/{cid}")
        assert deleted.status_code == 200
        assert deleted.json() == {"success": True, "message": f"Category {name} deleted",
                                  "data": {"id": name, "name": name}}
        missing = workspace.delete(f"{base}/{cid}")
        assert missing.status_code == 404 and missing.json() == {"success": False,
                                                                 "error": f"Category {name} not found"}


def test_items_and_kanban(workspace: httpx.Client) -> None:
    """Items and kanban: `GET /items`, `POST /items`, `PUT /items/{id}` with `status` (a card moved)."""
    for base in ws_paths("/items"):
        item = workspace.post(base, json={"title": "Coletar cotações", "category": "coleta-dados",
                                          "priority": "high", "tags": ["b3"]}).json()["data"]
        moved = workspace.put(f"{base}/{item['id']}", json={"status": "in-progress"}).json()["data"]
        assert moved["status"] == "in-progress" and moved["updatedAt"] and moved["createdAt"]
        listed = workspace.get(base, params={"status": "in-progress"}).json()
        assert item["id"] in [i["id"] for i in listed["data"]]
        assert workspace.delete(f"{base}/{item['id']}").status_code == 204


# -- CORS: the dashboard in direct mode calls 4005 and 3200 from the browser --------------------------------


@pytest.mark.parametrize("method, headers", [("DELETE", "content-type,x-api-key"), ("POST", "content-type"),
                                             ("PUT", "content-type,x-api-key"), ("PATCH", "content-type")])
def test_cors_preflight_from_the_dashboard(database_url: str, monkeypatch: pytest.MonkeyPatch,
                                           workspace: httpx.Client, method: str, headers: str) -> None:
    server = api_server(database_url, monkeypatch)
    try:
        for base, path in ((server.url, "/signals"), (str(workspace.base_url), "/api/categories/bug")):
            preflight = httpx.options(base + path, headers={"Origin": DASHBOARD,
                                                            "Access-Control-Request-Method": method,
                                                            "Access-Control-Request-Headers": headers})
            assert preflight.status_code == 200, (base, preflight.text)
            assert preflight.headers["access-control-allow-origin"] == DASHBOARD
            assert method in preflight.headers["access-control-allow-methods"]
            allowed = preflight.headers["access-control-allow-headers"].lower()
            assert all(h in allowed for h in headers.split(","))
            plain = httpx.get(base + path, headers={"Origin": DASHBOARD})
            assert plain.headers["access-control-allow-origin"] == DASHBOARD
            stranger = httpx.options(base + path, headers={"Origin": "http://evil.example",
                                                           "Access-Control-Request-Method": method})
            assert "access-control-allow-origin" not in stranger.headers
    finally:
        server.stop()
