"""TP Capital ingest against a real PostgreSQL: auth, validation, exactly-once storage, edits, deletes, batches."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.conftest import TOKEN
from tests.support.servers import ThreadServer

CHANNEL = "-1001649127710"
SIGNAL_TEXT = "🟢Swing Trade\n\nAtivo: BOVAW32\nCompra: 1,04 a 1,06\nAlvo 1: 1,15\nAlvo 2: 2,15\nAlvo final: 3,50\n\nStop: 0,70"
EDITED_TEXT = SIGNAL_TEXT.replace("1,04 a 1,06", "1,05 a 1,08")


def payload(message_id: int = 1, **extra: Any) -> dict[str, Any]:
    base = {"channelId": CHANNEL, "messageId": message_id, "timestamp": "2025-10-24T19:30:39Z",
            "text": SIGNAL_TEXT, "source": "user", "chatTitle": "Operações | TP Capital"}
    return {**base, **extra}


def metric(client: httpx.Client, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {line_start} not found")


def test_token_required_and_rotation_list_accepted(api: httpx.Client) -> None:
    for headers in ({"X-Gateway-Token": ""}, {"X-Gateway-Token": "wrong"}):
        response = api.post("/ingest", json=payload(), headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid or missing authentication token"}
    bare = httpx.post(str(api.base_url) + "/ingest", json=payload())
    assert bare.status_code == 401
    assert metric(api, "tpcapital_authentication_failures_total") == 3
    assert api.post("/ingest", json=payload(), headers={"X-Gateway-Token": "old-rotated-token"}).status_code == 200


def test_stored_then_duplicate(api: httpx.Client) -> None:
    first = api.post("/ingest", json=payload())
    assert first.status_code == 200
    body = first.json()
    assert body == {"success": True, "messageId": 1, "stored": True, "kind": "signal", "signalId": body["signalId"]}
    assert isinstance(body["signalId"], int)
    again = api.post("/ingest", json=payload())
    assert again.json() == {"success": True, "messageId": 1, "stored": False, "reason": "duplicate"}
    assert metric(api, "tpcapital_messages_stored_total") == 1
    assert metric(api, "tpcapital_duplicate_messages_total") == 1
    assert metric(api, "tpcapital_messages_received_total") == 2
    assert metric(api, 'tpcapital_signals_parsed_total{kind="signal"}') == 1


def test_signal_prices_are_exact_numbers(api: httpx.Client) -> None:
    text = "Day Trade\nAtivo: WINZ25\nEntrada: 128.450 - 128.500\nAlvo 1: 129.000\nStop: 128.100"
    api.post("/ingest", json=payload(text=text))
    api.post("/ingest", json=payload(2, text="Ativo: BEEFW655\nCompra: 0,250 a 0,270\nAlvo 1: 0,355\nStop: 0,16"))
    api.post("/ingest", json=payload(3, text="ATIVO: WINFUT1\nCOMPRA: 1.250,50 A 1.255,00\nALVO 1: 1.270,25\n"
                                           "STOP: 1.240,00"))
    signals = {s["asset"]: s for s in api.get("/signals").json()["data"]}
    win = signals["WINZ25"]
    assert (win["buy_min"], win["buy_max"], win["targets"], win["stop"]) == (128450, 128500, [129000], 128100)
    assert win["signal_type"] == "Day Trade"
    beef = signals["BEEFW655"]
    assert (beef["buy_min"], beef["buy_max"], beef["target_1"], beef["stop"]) == (0.25, 0.27, 0.355, 0.16)
    assert signals["WINFUT1"]["buy_min"] == 1250.5 and signals["WINFUT1"]["target_final"] == 1270.25
    for s in signals.values():
        assert isinstance(s["buy_min"], int | float) and not isinstance(s["buy_min"], bool)


def test_full_signal_shape(api: httpx.Client) -> None:
    signal_id = api.post("/ingest", json=payload()).json()["signalId"]
    data = api.get(f"/signals/{signal_id}").json()["data"]
    assert data == {
        "id": signal_id, "ts": 1761334239000, "channel": CHANNEL, "channel_title": "Operações | TP Capital",
        "message_id": 1, "signal_type": "Swing Trade", "asset": "BOVAW32", "buy_min": 1.04, "buy_max": 1.06,
        "target_1": 1.15, "target_2": 2.15, "target_final": 3.5, "targets": [1.15, 2.15], "stop": 0.7,
        "raw_message": SIGNAL_TEXT, "source": "user", "revision": 1, "deleted": False,
        "ingested_at": data["ingested_at"], "created_at": data["created_at"], "updated_at": data["updated_at"],
        # No update within the 30-day swing horizon: the trade expired 30 days after the signal.
        "status": "expired", "highest_target_hit": None, "closed_at": "2025-11-23T19:30:39.000Z", "gain_pct": None,
        "gain_source": None, "events_count": 0,
    }
    assert data["created_at"].endswith("Z")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"channelId": None}, "channelId is required"),
        ({"messageId": None}, "messageId is required"),
        ({"timestamp": None}, "timestamp is required"),
        ({"channelId": "abc"}, "channelId must be a string of an integer"),
        ({"messageId": "abc"}, "messageId must be a positive integer"),
        ({"messageId": 1.5}, "messageId must be a positive integer"),
        ({"messageId": 0}, "messageId must be a positive integer"),
        ({"messageId": -4}, "messageId must be a positive integer"),
        ({"messageId": True}, "messageId must be a positive integer"),
        ({"timestamp": "2025-02-30T10:00:00Z"}, "timestamp must be valid ISO 8601 datetime"),
        ({"timestamp": "2025-13-01T10:00:00Z"}, "timestamp must be valid ISO 8601 datetime"),
        ({"timestamp": "yesterday"}, "timestamp must be valid ISO 8601 datetime"),
        ({"text": ""}, "text is required unless photos are attached or kind is delete"),
        ({"text": "   "}, "text is required unless photos are attached or kind is delete"),
        ({"kind": "forward"}, "kind must be one of: new, edit, delete"),
        ({"replyToMessageId": 0}, "replyToMessageId must be a positive integer or null"),
        ({"replyToMessageId": "444261"}, "replyToMessageId must be a positive integer or null"),
        ({"kind": "edit"}, "editDate is required for kind edit"),
        ({"kind": "edit", "editDate": "2025-02-31T00:00:00Z"}, "editDate must be valid ISO 8601 datetime"),
        ({"source": "carrier-pigeon"}, "source must be one of: user, bot, backfill, import, replay"),
        ({"photos": "x.jpg"}, "photos must be a list"),
    ],
)
def test_validation_details(api: httpx.Client, change: dict[str, Any], expected: str) -> None:
    body = payload(**change)
    for key, value in change.items():
        if value is None:
            body.pop(key)
    response = api.post("/ingest", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Validation failed"
    assert expected in response.json()["details"]


def test_every_problem_is_reported_and_counted(api: httpx.Client) -> None:
    response = api.post("/ingest", json={"text": ""})
    details = response.json()["details"]
    assert {"channelId is required", "messageId is required", "timestamp is required"} <= set(details)
    assert metric(api, 'tpcapital_validation_failures_total{reason="missing_field"}') == 1
    bad = api.post("/ingest", content=b"{oops", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["details"] == ["body must be valid JSON"]
    assert api.post("/ingest", json=[1, 2]).status_code == 400


def test_photo_without_text_and_non_prefixed_channel(api: httpx.Client) -> None:
    photo = api.post("/ingest", json=payload(text="", photos=["photo:444261"]))
    assert photo.status_code == 200 and photo.json()["kind"] == "noise"
    odd = api.post("/ingest", json=payload(5, channelId="1649127710"))
    assert odd.status_code == 200  # only a warning in the log
    assert any(r["message"] == "Unusual payload" for r in api.get("/logs", params={"level": "warn"}).json()["data"])


def test_body_limits(api: httpx.Client) -> None:
    big = api.post("/ingest", json=payload(text="x" * (2 * 1024 * 1024)))
    assert big.status_code == 413
    too_many = api.post("/ingest/batch", json={"messages": [payload(i) for i in range(1, 1002)]})
    assert too_many.status_code == 400
    assert too_many.json()["details"] == ["messages must have at most 1000 items"]
    huge = api.post("/ingest/batch", json={"messages": [payload(1, text="y" * (9 * 1024 * 1024))]})
    assert huge.status_code == 413


def test_unicode_emoji_and_sql_metacharacters_stored_literally(api: httpx.Client) -> None:
    text = "🚀🔥 Ativo: PETR4 Compra: 38,50 Alvo 1: 40,00 Stop: 37,00 '; DROP TABLE tp_capital.signals;-- 中文 ñ"
    assert api.post("/ingest", json=payload(text=text, chatTitle="Canal 🚀 'x'")).json()["kind"] == "signal"
    signal = api.get("/signals", params={"search": "DROP TABLE"}).json()["data"][0]
    assert signal["raw_message"] == text and signal["channel_title"] == "Canal 🚀 'x'"
    assert api.get("/signals", params={"search": "%"}).json()["count"] == 0


def test_twenty_concurrent_copies_store_once(api: httpx.Client, api_server: ThreadServer) -> None:
    def send(_: int) -> dict[str, Any]:
        with httpx.Client(base_url=api_server.url, headers={"X-Gateway-Token": TOKEN}, timeout=30) as c:
            return c.post("/ingest", json=payload(77)).json()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(send, range(20)))
    assert sum(r["stored"] for r in results) == 1
    assert sum(r.get("reason") == "duplicate" for r in results) == 19
    assert api.get("/forwarded-messages").json()["data"].__len__() == 1
    assert api.get("/signals").json()["count"] == 1


def test_edit_reparses_and_bumps_revision_delete_is_soft(api: httpx.Client) -> None:
    signal_id = api.post("/ingest", json=payload()).json()["signalId"]
    edit = payload(kind="edit", editDate="2025-10-24T19:45:00Z", text=EDITED_TEXT)
    assert api.post("/ingest", json=edit).json()["signalId"] == signal_id
    assert api.post("/ingest", json=edit).json()["reason"] == "duplicate"
    data = api.get(f"/signals/{signal_id}").json()["data"]
    assert (data["buy_min"], data["buy_max"], data["revision"]) == (1.05, 1.08, 2)
    assert data["raw_message"] == EDITED_TEXT
    delete = api.post("/ingest", json=payload(kind="delete", text=""))
    assert delete.status_code == 200 and delete.json()["stored"] is True
    assert api.get("/signals").json()["count"] == 0
    shown = api.get("/signals", params={"include_deleted": "true"}).json()["data"]
    assert [s["id"] for s in shown] == [signal_id] and shown[0]["deleted"] is True
    kinds = sorted(m["kind"] for m in api.get("/forwarded-messages").json()["data"])
    assert kinds == ["delete", "edit", "new"]


def _final_state(client: httpx.Client, message_id: int) -> dict[str, Any]:
    rows = [s for s in client.get("/signals", params={"include_deleted": "true", "limit": 1000}).json()["data"]
            if s["message_id"] == message_id]
    assert len(rows) <= 1
    if not rows:
        return {}
    keep = ("asset", "buy_min", "buy_max", "targets", "stop", "raw_message", "revision", "deleted")
    return {k: rows[0][k] for k in keep}


@pytest.mark.parametrize("with_delete", [False, True])
def test_any_delivery_order_ends_in_the_same_state(api: httpx.Client, with_delete: bool) -> None:
    def versions(message_id: int) -> list[dict[str, Any]]:
        items = [payload(message_id),
                 payload(message_id, kind="edit", editDate="2025-10-24T19:45:00Z", text=EDITED_TEXT),
                 payload(message_id, kind="edit", editDate="2025-10-24T19:50:00Z",
                         text=EDITED_TEXT.replace("Stop: 0,70", "Stop: 0,75"))]
        if with_delete:
            items.append(payload(message_id, kind="delete", text=""))
        return items

    reference: dict[str, Any] | None = None
    for n, order in enumerate(itertools.permutations(range(len(versions(0))))):
        message_id = 1000 + n
        items = versions(message_id)
        for index in order:
            assert api.post("/ingest", json=items[index]).status_code == 200
        # Re-deliveries in any order change nothing.
        for index in reversed(order):
            assert api.post("/ingest", json=items[index]).json()["stored"] is False
        state = _final_state(api, message_id)
        if reference is None:
            reference = state
            assert state["revision"] == 3 and state["stop"] == 0.75 and state["deleted"] is with_delete
        assert state == reference, f"order {order}"


@pytest.mark.asyncio
async def test_update_becomes_an_event_of_the_latest_open_signal(api: httpx.Client, database_url: str) -> None:
    old = api.post("/ingest", json=payload(1, timestamp="2025-10-20T10:00:00Z")).json()["signalId"]
    latest = api.post("/ingest", json=payload(2, timestamp="2025-10-22T10:00:00Z")).json()["signalId"]
    update = api.post("/ingest", json=payload(3, timestamp="2025-10-23T10:00:00Z",
                                              text="BOVAW32 ALVO 1 ATINGIDO ✅ +17,02%"))
    assert update.json()["kind"] == "update"
    orphan = api.post("/ingest", json=payload(4, timestamp="2025-10-23T11:00:00Z", text="PETR4 stopado -3,5%"))
    assert orphan.json()["kind"] == "update"
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT message_id, signal_id, event, target, gain_pct FROM "
                                "tp_capital.signal_events ORDER BY message_id")
    finally:
        await conn.close()
    assert old != latest
    assert [(r["message_id"], r["signal_id"], r["event"], r["target"], str(r["gain_pct"])) for r in rows] == [
        (3, latest, "target_hit", 1, "17.02"), (4, None, "stop_hit", None, "-3.5")]


def test_batch_of_1000_with_one_bad_item(api: httpx.Client) -> None:
    messages: list[Any] = [payload(i, text=f"Ativo: PETR4\nCompra: {i},00\nAlvo 1: {i + 1},50\nStop: 1,00")
                           for i in range(1, 1000)]
    messages.insert(500, {"channelId": CHANNEL, "messageId": "x", "timestamp": "2025-10-24T19:30:39Z", "text": "t"})
    messages.append(payload(3))  # a duplicate inside the batch
    response = api.post("/ingest/batch", json={"messages": messages[:1000]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 1000
    assert results[500] == {"messageId": "x", "stored": False, "error": "Validation failed",
                            "details": ["messageId must be a positive integer"]}
    assert sum(1 for r in results if r["stored"]) == 999
    assert results[0]["kind"] == "signal" and results[0]["messageId"] == 1
    again = api.post("/ingest/batch", json={"messages": [payload(1), payload(2), payload(5000)]}).json()["results"]
    assert [r["stored"] for r in again] == [False, False, True]
    assert again[0]["reason"] == "duplicate"
    assert api.get("/signals", params={"limit": 1}).json()["count"] == 1000


def test_gateway_token_is_never_rate_limited(database_url: str, api_env: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tradingsystem.tpcapital.app import build_app

    monkeypatch.setenv("RATE_LIMIT_MAX", "3")
    server = ThreadServer(build_app(database_url)).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            codes = [client.post("/ingest", json=payload(i), headers={"X-Gateway-Token": TOKEN}).status_code
                     for i in range(1, 11)]
            assert codes == [200] * 10
            wrong = [client.post("/ingest", json=payload(1), headers={"X-Gateway-Token": "nope"}).status_code
                     for _ in range(5)]
            assert wrong[:3] == [401, 401, 401] and wrong[3:] == [429, 429]
    finally:
        server.stop()
