"""TP Capital queries and operations surface: filters in SQL, registry, per-source figures, logs, metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request

from tests.integration.conftest import TOKEN
from tests.support.servers import ThreadServer

A, B = "-1001111111111", "-1002222222222"


def ingest(api: httpx.Client, message_id: int, text: str, channel: str = A, when: str = "2025-10-24T12:00:00Z",
           source: str = "user", title: str = "Canal A") -> dict[str, Any]:
    response = api.post("/ingest", json={"channelId": channel, "messageId": message_id, "timestamp": when,
                                         "text": text, "source": source, "chatTitle": title})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def seeded(api: httpx.Client) -> httpx.Client:
    ingest(api, 1, "Swing Trade\nAtivo: PETR4\nCompra: 38,50\nAlvo 1: 40,00\nStop: 37,00", when="2025-10-01T10:00:00Z")
    ingest(api, 2, "Day Trade\nAtivo: VALE3\nCompra: 61,20 - 61,80\nAlvo 1: 63,50\nStop: 59,90",
           when="2025-10-02T10:00:00Z")
    ingest(api, 3, "Scalping\nAtivo: BOVAW32\nCompra: 1,04 a 1,06\nAlvo: 1,15\nStop: 0,70", channel=B,
           when="2025-10-03T10:00:00Z", title="Canal B", source="bot")
    ingest(api, 4, "Bom dia, pessoal! Mercado abrindo em alta.", when="2025-10-04T10:00:00Z", source="replay")
    return api


def assets(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/signals", params=params)
    assert response.status_code == 200, response.text
    return [s["asset"] for s in response.json()["data"]]


def test_signal_filters_and_search(seeded: httpx.Client) -> None:
    assert assets(seeded) == ["BOVAW32", "VALE3", "PETR4"]  # newest first
    assert assets(seeded, channel=B) == ["BOVAW32"]
    assert assets(seeded, type="day trade") == ["VALE3"]
    assert assets(seeded, asset="petr4") == ["PETR4"]
    assert assets(seeded, search="vale") == ["VALE3"]
    assert assets(seeded, search="61,80") == ["VALE3"]
    assert assets(seeded, **{"from": "2025-10-02"}) == ["BOVAW32", "VALE3"]
    assert assets(seeded, to="2025-10-02") == ["VALE3", "PETR4"]
    assert assets(seeded, **{"from": "2025-10-02T00:00:00Z", "to": "2025-10-02T23:59:59Z"}) == ["VALE3"]
    assert assets(seeded, **{"from": str(1759399200000)}) == ["BOVAW32", "VALE3"]  # 2025-10-02T10:00Z in ms
    page = seeded.get("/signals", params={"limit": 1, "offset": 1}).json()
    assert page["count"] == 3 and [s["asset"] for s in page["data"]] == ["VALE3"]


@pytest.mark.parametrize("params", [{"limit": 1001}, {"limit": 0}, {"limit": "ten"}, {"offset": -1},
                                    {"from": "not-a-date"}, {"to": "2025-02-30"}, {"include_deleted": "perhaps"}])
def test_bad_query_parameters_are_400(seeded: httpx.Client, params: dict[str, Any]) -> None:
    response = seeded.get("/signals", params=params)
    assert response.status_code == 400
    assert response.json()["error"] == "Validation failed" and response.json()["details"]


def test_signal_by_id_and_soft_delete_with_api_key(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradingsystem.tpcapital.app import build_app

    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", TOKEN)
    monkeypatch.setenv("TP_CAPITAL_API_KEY", "k3y-for-dashboards")
    server = ThreadServer(build_app(database_url)).start()
    try:
        with httpx.Client(base_url=server.url, headers={"X-Gateway-Token": TOKEN}) as client:
            signal_id = ingest(client, 9, "Ativo: ITUB4\nCompra: 25,50\nAlvo 1: 27,40\nStop: 24,00")["signalId"]
            assert client.get(f"/signals/{signal_id}").json()["data"]["asset"] == "ITUB4"
            missing = client.get("/signals/999999")
            assert missing.status_code == 404 and missing.json() == {"error": "Signal 999999 not found"}
            assert client.get("/signals/abc").status_code == 400
            assert client.delete(f"/signals/{signal_id}").status_code == 401
            assert client.delete(f"/signals/{signal_id}", headers={"X-API-Key": "wrong"}).status_code == 401
            assert client.delete(f"/signals/{signal_id}", headers={"X-API-Key": "k3y-for-dashboards"}).status_code == 204
            assert client.get(f"/signals/{signal_id}").json()["data"]["deleted"] is True
            assert client.get("/signals").json()["count"] == 0
            assert client.delete("/signals/999999", headers={"X-API-Key": "k3y-for-dashboards"}).status_code == 404
            assert client.post("/telegram-channels", json={"label": "x", "channel_id": "-1001"}).status_code == 401
    finally:
        server.stop()


def test_without_api_key_mutations_accept_loopback_only() -> None:
    from tradingsystem.core.errors import Forbidden
    from tradingsystem.tpcapital.routes import require_api_key

    class State:
        api_key = None

    class App:
        state = State()

    def request(host: str) -> Request:
        return Request({"type": "http", "method": "DELETE", "path": "/signals/1", "headers": [],
                        "client": (host, 5000), "app": App()})

    require_api_key(request("127.0.0.1"))
    require_api_key(request("::1"))
    with pytest.raises(Forbidden):
        require_api_key(request("203.0.113.9"))


def test_channels_bots_and_forwarded_messages(seeded: httpx.Client) -> None:
    channels = seeded.get("/channels").json()["data"]
    assert channels == [
        {"channel": B, "channel_title": "Canal B", "signal_count": 1, "last_signal": "2025-10-03T10:00:00.000Z"},
        {"channel": A, "channel_title": "Canal A", "signal_count": 2, "last_signal": "2025-10-02T10:00:00.000Z"},
    ]
    bots = {b["source"]: b for b in seeded.get("/bots").json()["data"]}
    assert set(bots) == {"user", "bot", "backfill", "import", "replay"}
    assert bots["user"]["messages"] == 2 and bots["bot"]["messages"] == 1 and bots["replay"]["messages"] == 1
    assert bots["import"] == {"source": "import", "messages": 0, "last_message_at": None}
    assert TOKEN not in seeded.get("/bots").text

    raw = seeded.get("/forwarded-messages", params={"limit": 2}).json()["data"]
    assert [m["message_id"] for m in raw] == [4, 3]
    assert set(raw[0]) == {"id", "channel_id", "message_id", "message_text", "original_timestamp", "photos",
                           "received_at", "kind", "edit_date", "ts", "source_channel_id", "source_channel_name",
                           "forwarded_at"}
    assert raw[0]["message_text"].startswith("Bom dia") and raw[0]["kind"] == "new" and raw[0]["edit_date"] is None
    only_b = seeded.get("/forwarded-messages", params={"channelId": B}).json()["data"]
    assert [m["message_id"] for m in only_b] == [3]
    window = seeded.get("/forwarded-messages", params={"from": "2025-10-02", "to": "2025-10-03"}).json()["data"]
    assert [m["message_id"] for m in window] == [3, 2]


def test_channel_registry_and_gateway_view(api: httpx.Client) -> None:
    created = api.post("/telegram-channels", json={"label": "TP Capital", "channel_id": "-1001649127710",
                                                   "description": "Sinais"})
    assert created.status_code == 201
    channel = created.json()["data"]
    assert channel["channel_type"] == "source" and channel["status"] == "active"
    assert set(channel) == {"id", "label", "channel_id", "channel_type", "description", "status", "created_at",
                            "updated_at"}
    dup = api.post("/telegram-channels", json={"label": "again", "channel_id": "-1001649127710"})
    assert dup.status_code == 409
    assert api.post("/telegram-channels", json={"label": "x", "channel_id": "abc"}).status_code == 400
    dest = api.post("/telegram-channels", json={"label": "Espelho", "channel_id": "-1009", "channel_type":
                                                "destination"}).json()["data"]
    assert [c["label"] for c in api.get("/telegram-channels").json()["data"]] == ["TP Capital", "Espelho"]
    assert api.get(f"/telegram-channels/{channel['id']}").json()["data"]["label"] == "TP Capital"

    gateway = api.get("/gateway/channels").json()["data"]
    assert [c["channel_id"] for c in gateway] == ["-1001649127710"]
    assert httpx.get(str(api.base_url) + "/gateway/channels").status_code == 401

    updated = api.put(f"/telegram-channels/{channel['id']}", json={"status": "inactive"}).json()["data"]
    assert updated["status"] == "inactive"
    assert api.get("/gateway/channels").json()["data"] == []
    assert api.put(f"/telegram-channels/{channel['id']}", json={"bogus": 1}).status_code == 400
    assert api.delete(f"/telegram-channels/{dest['id']}").json() == {"success": True, "id": dest["id"]}
    assert api.get(f"/telegram-channels/{dest['id']}").status_code == 404
    assert api.delete(f"/telegram-channels/{dest['id']}").status_code == 404


def test_registry_writes_refuse_unknown_fields_alike_and_list_every_problem(api: httpx.Client) -> None:
    channel = api.post("/telegram-channels", json={"label": "TP Capital", "channel_id": "-1001"}).json()["data"]
    for method, url, base in (("post", "/telegram-channels", {"label": "x", "channel_id": "-1002"}),
                              ("put", f"/telegram-channels/{channel['id']}", {})):
        unknown = getattr(api, method)(url, json={**base, "lable": "typo"})
        assert unknown.status_code == 400
        assert unknown.json() == {"error": "Validation failed", "details": ["lable is not an allowed field"]}
        several = getattr(api, method)(url, json={**base, "channel_type": "mirror", "status": "on", "label": ""})
        assert several.status_code == 400
        assert several.json()["details"] == ["label is required", "channel_type must be one of: source, destination",
                                             "status must be one of: active, inactive"]
    assert [c["label"] for c in api.get("/telegram-channels").json()["data"]] == ["TP Capital"]


def test_logs_health_metrics_and_edges(api: httpx.Client) -> None:
    api.post("/ingest", json={"text": "x"})  # a validation failure is logged
    logs = api.get("/logs", params={"limit": 5}).json()["data"]
    assert logs and set(logs[0]) == {"timestamp", "level", "message", "context"}
    assert all(r["level"] == "info" for r in api.get("/logs", params={"level": "info"}).json()["data"])
    assert api.get("/logs", params={"level": "loud"}).status_code == 400

    health = api.get("/health").json()
    assert health["status"] == "healthy" and health["database"] == "connected"
    assert {"uptime", "timestamp"} <= set(health)
    text = api.get("/metrics").text
    for name in ("tpcapital_messages_received_total", "tpcapital_messages_stored_total",
                 "tpcapital_duplicate_messages_total", "tpcapital_signals_parsed_total",
                 "tpcapital_validation_failures_total", "tpcapital_authentication_failures_total",
                 "tpcapital_database_connection_status 1.0", "tpcapital_http_request_duration_seconds_bucket"):
        assert name in text
    assert 'route="/ingest"' in text and 'status="400"' in text
    nothing = api.get("/no-such-route")
    assert nothing.status_code == 404 and nothing.json() == {"error": "Not Found"}
    assert nothing.headers["x-frame-options"] == "DENY" and nothing.headers["x-correlation-id"]
    assert api.get("/openapi.json").json()["paths"]["/ingest"]["post"]["requestBody"]
