"""The publisher against a real HTTP stand-in: retries, failure queue, re-drive, rejects, order, cap, batches."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.ingest_server import IngestStandIn
from tradingsystem.gateway.cursors import Cursors
from tradingsystem.gateway.failure_queue import REJECTED_PREFIX, FailureQueue
from tradingsystem.gateway.journal import Journal
from tradingsystem.gateway.metrics import GatewayMetrics
from tradingsystem.gateway.publisher import IngestClient, Publisher, RetrySchedule, api_urls

MAX_RETRIES = 3
BASE_DELAY_MS = 20


def payload(channel: str, message_id: int, **extra: Any) -> dict[str, Any]:
    return {"channelId": channel, "messageId": message_id, "timestamp": "2025-10-24T19:30:39Z",
            "text": f"mensagem {message_id}", "kind": "new", "editDate": None, "photos": [], "source": "bot",
            "chatTitle": "TP Capital", "forwardedFrom": None, **extra}


async def eventually(predicate: Callable[[], bool], within_s: float = 20.0, message: str = "condition") -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {message}")
        await asyncio.sleep(0.02)


@dataclass
class Harness:
    api: IngestStandIn
    journal: Journal
    queue: FailureQueue
    cursors: Cursors
    metrics: GatewayMetrics
    publisher: Publisher

    async def receive(self, *payloads: dict[str, Any]) -> None:
        """What the service's sink does: journal durably, then tell the publisher."""
        for p in payloads:
            await self.journal.append(p)
            self.publisher.notify(p["channelId"])

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def queue_lines(self) -> list[dict[str, Any]]:
        if not self.queue.path.exists():
            return []
        return [json.loads(line) for line in self.queue.path.read_bytes().splitlines()]


@pytest.fixture
def api() -> Iterator[IngestStandIn]:
    with IngestStandIn() as server:
        yield server


async def make_harness(api: IngestStandIn, tmp_path: Path, *, max_bytes: int = 10_000_000,
                       schedule: RetrySchedule | None = None) -> Harness:
    schedule = schedule or RetrySchedule(MAX_RETRIES, BASE_DELAY_MS)
    metrics = GatewayMetrics(schedule.max_retries)
    journal = Journal(tmp_path / "journal.db").open()
    queue = FailureQueue(tmp_path / "failure-queue.jsonl", max_bytes=max_bytes, warn_bytes=max_bytes // 2)
    cursors = Cursors(tmp_path / "cursors.json")
    client = IngestClient(api.ingest_url, api.token, 2000, metrics=metrics)
    publisher = Publisher(journal, queue, cursors, metrics, client, schedule,
                          redrive_interval_s=0.2, prune_interval_s=0.5)
    await publisher.start()
    return Harness(api, journal, queue, cursors, metrics, publisher)


@pytest.fixture
async def harness(api: IngestStandIn, tmp_path: Path) -> AsyncIterator[Harness]:
    h = await make_harness(api, tmp_path)
    yield h
    await h.publisher.stop()
    await h.publisher.client.aclose()
    h.journal.close()


def test_batch_and_registry_urls_derive_from_the_ingest_endpoint() -> None:
    urls = api_urls("http://localhost:4005/ingest")
    assert (urls.ingest, urls.batch, urls.channels) == (
        "http://localhost:4005/ingest", "http://localhost:4005/ingest/batch", "http://localhost:4005/gateway/channels")
    assert api_urls("https://api.example/tp/ingest/").channels == "https://api.example/tp/gateway/channels"


def test_retry_schedule_doubles_from_the_base_delay() -> None:
    assert RetrySchedule(3, 5000).delays() == [5.0, 10.0, 20.0]
    assert RetrySchedule(0, 5000).delays() == []


async def test_messages_of_several_channels_are_delivered_in_order(harness: Harness) -> None:
    sent = [payload(f"-100{i % 3}", i // 3 + 1) for i in range(60)]
    await harness.receive(*sent)
    await eventually(lambda: harness.api.distinct() == 60, message="all 60 stored")
    for channel in ("-1000", "-1001", "-1002"):
        assert harness.api.stored_ids(channel) == list(range(1, 21))
    await eventually(lambda: harness.journal.counts()["pending"] == 0, message="journal marked delivered")
    assert harness.metric("telegram_messages_published_total") == 60
    assert harness.cursors.last_acknowledged("-1001") == 20
    # One observation per POST: a backlog goes as one /ingest/batch, so there are between 1 and 60 of them.
    assert 1 <= harness.metric("telegram_publish_duration_seconds_count") <= 60
    await eventually(lambda: harness.journal.counts()["delivered"] == 0, message="delivered entries pruned")


async def test_a_duplicate_answer_acknowledges_the_message(harness: Harness) -> None:
    await harness.receive(payload("-1001", 1))
    await eventually(lambda: harness.api.distinct() == 1)
    await harness.receive(payload("-1001", 1))
    await eventually(lambda: harness.api.duplicates == 1 and harness.journal.pending_count() == 0)
    assert harness.queue_lines() == []
    assert harness.metric("telegram_messages_published_total") == 2


async def test_transient_failures_are_retried_on_schedule(harness: Harness) -> None:
    harness.api.fail_next = 2
    await harness.receive(payload("-1001", 1))
    await eventually(lambda: harness.api.distinct() == 1, message="stored after two retries")
    assert harness.api.attempts(1) == 3
    assert harness.metric("telegram_retry_attempts_total", {"attempt_number": "1"}) == 1
    assert harness.metric("telegram_retry_attempts_total", {"attempt_number": "2"}) == 1
    assert harness.metric("telegram_retry_attempts_total", {"attempt_number": "3"}) == 0
    assert harness.queue_lines() == []


async def test_api_down_for_the_whole_window_queues_then_redrives_by_itself(harness: Harness) -> None:
    harness.api.stop()
    await harness.receive(payload("-1001", 1), payload("-1001", 2))
    await eventually(lambda: len(harness.queue_lines()) == 2, message="both messages in the failure queue")
    first = harness.queue_lines()[0]
    assert first["messageId"] == 1 and first["attempts"] >= MAX_RETRIES + 1  # later re-drive probes add theirs
    assert "Connect" in first["lastError"]
    assert harness.metric("telegram_publish_failures_total", {"reason": "max_retries"}) == 2
    assert harness.metric("telegram_retry_attempts_total", {"attempt_number": "3"}) == 2
    # the queue holds them now (the journal lets go of each just after its line is fsync'd)
    await eventually(lambda: harness.journal.pending_count() == 0, message="journal marks queued")
    await eventually(lambda: harness.metric("telegram_failure_queue_size") == 2, message="queue gauge")

    harness.api.start()
    await eventually(lambda: harness.api.distinct() == 2, message="automatic re-drive")
    await eventually(lambda: harness.queue_lines() == [], message="delivered lines removed")
    assert harness.api.stored_ids("-1001") == [1, 2]
    await eventually(lambda: harness.metric("telegram_failure_queue_size") == 0)
    assert harness.cursors.last_acknowledged("-1001") == 2


async def test_a_line_queued_while_the_redrive_runs_is_redriven_too(harness: Harness) -> None:
    # Found by the fault suite (API killed mid-burst): a worker moved its message to the queue while a
    # re-drive was sending the older lines; that replay left it for the next one, which never came.
    queue = harness.queue
    for i in (1, 2, 3):
        queue.append(payload("-1001", i), 4, "HTTP 503: Database unavailable")
    harness.api.delay_s = 1.0  # the re-drive's batch is with the API for a second

    def replaying() -> bool:
        with queue._file_lock(queue._replay_lock_path, blocking=False) as free:
            return not free

    await eventually(replaying, message="the re-drive under way")
    await asyncio.to_thread(queue.append, payload("-1001", 4), 4, "HTTP 503: Database unavailable")
    await eventually(lambda: harness.api.distinct() == 3, message="the three older lines re-driven")
    harness.api.delay_s = 0.0
    await eventually(lambda: harness.api.distinct() == 4 and harness.queue_lines() == [],
                     message="the line queued meanwhile re-driven as well")


async def test_503_for_the_whole_window_counts_as_a_failure_too(harness: Harness) -> None:
    harness.api.mode = "unavailable"
    await harness.receive(payload("-1001", 1))
    await eventually(lambda: len(harness.queue_lines()) == 1)
    assert harness.queue_lines()[0]["lastError"].startswith("HTTP 503")
    harness.api.mode = "ok"
    await eventually(lambda: harness.api.distinct() == 1 and harness.queue_lines() == [])


async def test_a_message_the_api_rejects_is_queued_with_the_reason_and_the_rest_flow(harness: Harness) -> None:
    harness.api.reject = {2}
    await harness.receive(*(payload("-1001", i) for i in range(1, 6)))
    await eventually(lambda: harness.api.distinct() == 4, message="the other four stored")
    assert harness.api.stored_ids("-1001") == [1, 3, 4, 5]
    assert harness.api.attempts(2) == 1  # never retried
    [line] = harness.queue_lines()
    assert line["messageId"] == 2 and line["attempts"] == 1
    # Sent alone it is an HTTP 400; inside a backlog batch, that item's own "Validation failed" result.
    assert line["lastError"].startswith(REJECTED_PREFIX)
    assert "Validation failed" in line["lastError"] or "text is not acceptable" in line["lastError"]
    assert harness.metric("telegram_publish_failures_total", {"reason": "rejected"}) == 1
    # successes trigger the automatic re-drive; it must not keep re-sending a refused message
    await harness.receive(payload("-1001", 6))
    await eventually(lambda: harness.api.distinct() == 5)
    await harness.publisher.redrive()
    assert harness.api.attempts(2) == 1
    assert len(harness.queue_lines()) == 1


async def test_a_stuck_channel_does_not_hold_up_the_others(api: IngestStandIn, tmp_path: Path) -> None:
    # a long retry window (10 retries from 50 ms) keeps channel 1's head retrying while channel 2 flows
    h = await make_harness(api, tmp_path, schedule=RetrySchedule(10, 50))
    try:
        api.fail_ids = {1}
        await h.receive(payload("-1001", 1), payload("-1001", 2), payload("-1001", 3))
        await h.receive(*(payload("-1002", 100 + i) for i in range(20)))
        await eventually(lambda: len(api.stored_ids("-1002")) == 20, message="channel 2 flows")
        assert api.attempts(1) < 11, "the head must still be within its retries for this check to mean anything"
        assert api.stored_ids("-1001") == []  # channel 1 waits on its own head
        # What stands behind the head is only ever sent with it (in the head's batch), never on its own.
        assert api.attempts(2) <= api.attempts(1)
        api.fail_ids = set()
        await eventually(lambda: api.stored_ids("-1001") == [1, 2, 3], message="channel 1 in order")
        assert h.queue_lines() == []
    finally:
        await h.publisher.stop()
        await h.publisher.client.aclose()
        h.journal.close()


async def test_a_tiny_queue_cap_loses_nothing(api: IngestStandIn, tmp_path: Path) -> None:
    h = await make_harness(api, tmp_path, max_bytes=400)  # room for one line
    try:
        api.stop()
        await h.receive(*(payload("-1001", i) for i in range(1, 6)))
        await eventually(lambda: h.journal.counts()["held"] == 4, message="four held in the journal")
        assert [line["messageId"] for line in h.queue_lines()] == [1]
        assert h.metric("telegram_publish_failures_total", {"reason": "queue_full"}) >= 4
        assert h.journal.pending_count() == 4
        api.start()
        await eventually(lambda: api.distinct() == 5, message="queue and held entries delivered")
        await eventually(lambda: h.queue_lines() == [] and h.journal.pending_count() == 0)
        assert sorted(api.stored_ids()) == [1, 2, 3, 4, 5]
    finally:
        await h.publisher.stop()
        await h.publisher.client.aclose()
        h.journal.close()


async def test_pending_entries_are_sent_after_a_restart(api: IngestStandIn, tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db").open() as journal:
        journal.append_many([payload("-1001", i) for i in range(1, 31)])
    h = await make_harness(api, tmp_path)
    try:
        await eventually(lambda: api.distinct() == 30, message="journal drained on start")
        assert api.stored_ids("-1001") == list(range(1, 31))
    finally:
        await h.publisher.stop()
        await h.publisher.client.aclose()
        h.journal.close()


async def test_batch_path_chunks_by_1000_and_reports_each_message(harness: Harness) -> None:
    payloads = [payload("-1001", i) for i in range(1, 2501)]
    harness.api.reject = {7}
    chunks: list[int] = []
    results = await harness.publisher.publish_batch(payloads, on_chunk=chunks.append)
    assert chunks == [1000, 1000, 500] and harness.api.batch_requests == 3
    assert sum(r.delivered for r in results) == 2499
    assert results[6].delivered is False and "not acceptable" in (results[6].error or "")
    again = await harness.publisher.publish_batch(payloads[:10])
    assert [r.duplicate for r in again if r.delivered] == [True] * 9
    assert harness.cursors.last_acknowledged("-1001") == 2500


async def test_batch_path_reports_failure_when_the_api_stays_down(harness: Harness) -> None:
    harness.api.stop()
    results = await harness.publisher.publish_batch([payload("-1001", 1), payload("-1001", 2)])
    assert [r.delivered for r in results] == [False, False]
    assert all("Connect" in (r.error or "") for r in results)
