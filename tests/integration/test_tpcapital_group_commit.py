"""Group commit of single deliveries against a real PostgreSQL: concurrent `/ingest` calls share a statement and
a commit, and each still gets its own stored/duplicate answer, its own parse and its own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.conftest import TOKEN
from tests.support.pg import PgCluster
from tradingsystem.core.db import Database, DatabaseUnavailable
from tradingsystem.core.embedded import free_port
from tradingsystem.core.migrations import migrate
from tradingsystem.tpcapital.metrics import TpCapitalMetrics
from tradingsystem.tpcapital.service import TokenChecker, TpCapitalService

CHANNELS = ("-1001000000101", "-1001000000102", "-1001000000103")
SIGNAL = "Ativo: PETR4\nCompra: 38,50\nAlvo 1: 40,00\nStop: 37,00"
UPDATE = "PETR4 ALVO 1 ATINGIDO ✅\n+3,90%"
NOISE = "Bom dia a todos!"


def message(message_id: int, text: str = SIGNAL, channel: str = CHANNELS[0], minute: int = 0) -> dict[str, Any]:
    return {"channelId": channel, "messageId": message_id, "timestamp": f"2025-10-24T19:{minute:02d}:00Z",
            "text": text, "source": "user"}


async def open_service(url: str, query_retries: int = 3) -> TpCapitalService:
    db = Database(url, max_size=4, query_retries=query_retries, query_retry_delay_s=0.05)
    await db.connect(attempts=0)
    async with db.pool.acquire() as conn:
        await migrate(conn, ["tp_capital"])
    return TpCapitalService(db, TpCapitalMetrics(), TokenChecker(TOKEN))


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[TpCapitalService]:
    svc = await open_service(database_url)
    yield svc
    await svc.db.close()


def groups(svc: TpCapitalService) -> tuple[float, float]:
    """(groups stored, deliveries in them) from the service's own histogram."""
    registry = svc.metrics.registry
    count = registry.get_sample_value("tpcapital_ingest_group_size_count")
    total = registry.get_sample_value("tpcapital_ingest_group_size_sum")
    return (count or 0.0, total or 0.0)


async def together(svc: TpCapitalService, payloads: list[dict[str, Any]]) -> list[Any]:
    """Deliver concurrently: every call reaches the service before the first group starts."""
    return await asyncio.gather(*(svc.ingest_one(p) for p in payloads), return_exceptions=True)


async def test_concurrent_deliveries_share_one_commit_and_each_gets_its_own_answer(
        service: TpCapitalService) -> None:
    payloads = [message(i, SIGNAL if i % 3 == 0 else NOISE, minute=i) for i in range(1, 21)]
    answers = await together(service, payloads)
    assert groups(service) == (1.0, 20.0)
    for p, answer in zip(payloads, answers, strict=True):
        kind = "signal" if p["text"] == SIGNAL else "noise"
        assert answer["messageId"] == p["messageId"] and answer["stored"] is True and answer["kind"] == kind
        assert (answer["signalId"] is None) == (kind == "noise")
    signal_ids = [a["signalId"] for a in answers if a["kind"] == "signal"]
    assert len(set(signal_ids)) == len(signal_ids) == 6
    rows = await service.db.fetch("SELECT message_id FROM tp_capital.messages ORDER BY message_id")
    assert [r["message_id"] for r in rows] == list(range(1, 21))
    # Every answer came after its row was committed: another connection sees them all.
    conn = await asyncpg.connect(service.db.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tp_capital.messages") == 20
    finally:
        await conn.close()


async def test_a_message_twice_in_one_group_is_stored_once_and_the_second_is_the_duplicate(
        service: TpCapitalService) -> None:
    answers = await together(service, [message(7), message(8, NOISE), message(7), message(9, NOISE)])
    assert groups(service) == (1.0, 4.0)
    assert [(a["messageId"], a["stored"]) for a in answers] == [(7, True), (8, True), (7, False), (9, True)]
    assert answers[2] == {"success": True, "messageId": 7, "stored": False, "reason": "duplicate"}
    assert await service.db.fetchval("SELECT count(*) FROM tp_capital.messages WHERE message_id = 7") == 1
    registry = service.metrics.registry
    assert registry.get_sample_value("tpcapital_duplicate_messages_total") == 1
    assert registry.get_sample_value("tpcapital_messages_stored_total") == 3


async def test_a_redelivery_in_a_later_group_is_a_duplicate(service: TpCapitalService) -> None:
    first = await together(service, [message(1), message(2, NOISE)])
    again = await together(service, [message(3, NOISE), message(1), message(2, NOISE)])
    assert groups(service) == (2.0, 5.0)
    assert [a["stored"] for a in first] == [True, True]
    assert [(a["messageId"], a["stored"]) for a in again] == [(3, True), (1, False), (2, False)]


async def test_mixed_channels_in_one_group_keep_their_own_rows(service: TpCapitalService) -> None:
    # The same message id in three channels: three different messages.
    answers = await together(service, [message(5, SIGNAL, channel) for channel in reversed(CHANNELS)])
    assert groups(service) == (1.0, 3.0)
    assert all(a["stored"] and a["kind"] == "signal" for a in answers)
    by_channel = {r["channel_id"]: r["id"] for r in await service.db.fetch(
        "SELECT channel_id, id FROM tp_capital.signals WHERE message_id = 5")}
    assert [by_channel[channel] for channel in reversed(CHANNELS)] == [a["signalId"] for a in answers]


async def test_an_update_in_the_same_group_as_its_signal_is_linked_to_it(service: TpCapitalService) -> None:
    # The update comes first in the group (a later message id, but submitted first); per channel, links follow
    # Telegram order, as for deliveries one at a time. The other channel's signal of the same asset is not it.
    answers = await together(service, [message(11, UPDATE, minute=5), message(10, SIGNAL, minute=1),
                                       message(10, SIGNAL, CHANNELS[1], minute=2)])
    assert [a["kind"] for a in answers] == ["update", "signal", "signal"]
    event = await service.db.fetchrow("SELECT signal_id, event, target FROM tp_capital.signal_events")
    assert (event["signal_id"], event["event"], event["target"]) == (answers[1]["signalId"], "target_hit", 1)
    one_by_one = await open_service(service.db.dsn)
    try:
        # The same deliveries one at a time in another channel pair end in the same links.
        sig = await one_by_one.ingest_one(message(10, SIGNAL, CHANNELS[2], minute=1))
        await one_by_one.ingest_one(message(11, UPDATE, CHANNELS[2], minute=5))
        linked = await one_by_one.db.fetchval(
            "SELECT signal_id FROM tp_capital.signal_events WHERE channel_id = $1", CHANNELS[2])
        assert linked == sig["signalId"]
    finally:
        await one_by_one.db.close()


async def test_a_message_the_database_refuses_fails_alone(service: TpCapitalService) -> None:
    # jsonb cannot hold a NUL character: the payload is valid, the database refuses the value.
    bad = {**message(2, NOISE), "photos": ["photo\x00id"]}
    answers = await together(service, [message(1, NOISE), bad, message(3)])
    assert groups(service) == (1.0, 3.0)
    assert answers[0]["stored"] is True and answers[2]["stored"] is True
    assert isinstance(answers[1], asyncpg.DataError)
    rows = await service.db.fetch("SELECT message_id FROM tp_capital.messages ORDER BY message_id")
    assert [r["message_id"] for r in rows] == [1, 3]


async def test_with_the_database_away_every_caller_of_the_group_gets_database_unavailable(tmp_path: Path) -> None:
    cluster = PgCluster(tmp_path, free_port())
    cluster.start()
    svc = await open_service(cluster.url("postgres"), query_retries=1)
    try:
        assert (await svc.ingest_one(message(1)))["stored"] is True
        cluster.stop()
        answers = await together(svc, [message(2), message(3, NOISE), message(4)])
        assert all(isinstance(a, DatabaseUnavailable) for a in answers)
        assert len({id(a) for a in answers}) == 3  # each caller raises its own exception
        cluster.start()
        # The gateway sends them again: stored now, exactly once.
        again = await together(svc, [message(2), message(3, NOISE), message(4), message(1)])
        assert [a["stored"] for a in again] == [True, True, True, False]
    finally:
        await svc.db.close()
        cluster.stop()


def test_concurrent_http_deliveries_each_get_their_own_answer(api: httpx.Client) -> None:
    """Over HTTP, 16 at a time, with redeliveries and a bad message among them."""
    # 120 distinct messages, each sent twice (i and i + 120 are the same message).
    payloads = [message(i % 40 + 1, SIGNAL if i % 2 else NOISE, CHANNELS[i % 3], minute=i % 40) for i in range(240)]
    payloads[17] = {**message(999, NOISE), "photos": ["NUL \x00 here"]}

    def post(p: dict[str, Any]) -> httpx.Response:
        return api.post("/ingest", json=p)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, payloads))
    assert answers[17].status_code == 400 and answers[17].json()["error"] == "Validation failed"
    good = [(p, a.json()) for i, (p, a) in enumerate(zip(payloads, answers, strict=True)) if i != 17]
    assert all(a["messageId"] == p["messageId"] and a["success"] is True for p, a in good)
    keys = {(p["channelId"], p["messageId"]) for p, _ in good}
    stored = [p for p, a in good if a["stored"]]
    # Each distinct message stored exactly once, whoever's request carried it; the others were duplicates.
    assert len(stored) == len(keys) == len({(p["channelId"], p["messageId"]) for p in stored})
    assert all(a["reason"] == "duplicate" for _, a in good if not a["stored"])
    assert len(keys) == 120
    signals = api.get("/signals", params={"limit": 1000}).json()["count"]
    assert signals == len({(p["channelId"], p["messageId"]) for p in stored if p["text"] == SIGNAL}) == 60
