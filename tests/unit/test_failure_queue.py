"""The failure queue file: contract lines, status, warning, cap, full disk, replay keeping undelivered lines."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.support.fs import TinyFilesystem, fill

from tradingsystem.gateway.failure_queue import REJECTED_PREFIX, FailureQueue, QueueFullError, ReplayOutcome
from tradingsystem.gateway.types import IngestPayload

SendOne = Callable[[IngestPayload], Awaitable[ReplayOutcome]]


def each(send: SendOne) -> Callable[[list[IngestPayload]], Awaitable[list[ReplayOutcome]]]:
    """A batch sender that answers each payload of a batch with `send`."""

    async def send_batch(payloads: list[IngestPayload]) -> list[ReplayOutcome]:
        return [await send(p) for p in payloads]

    return send_batch


def payload(message_id: int, channel: str = "-1001649127710") -> dict[str, Any]:
    return {"channelId": channel, "messageId": message_id, "timestamp": "2025-10-24T19:30:39Z",
            "text": "Ativo: BOVAW32 Compra: 1,04 a 1,06 Alvo 1: 1,15 Stop: 0,70", "kind": "new", "editDate": None,
            "photos": [], "source": "user", "chatTitle": "Operações | TP Capital", "forwardedFrom": None}


def lines(queue: FailureQueue) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in queue.path.read_bytes().splitlines()]


@pytest.fixture
def queue(tmp_path: Path) -> FailureQueue:
    return FailureQueue(tmp_path / "failure-queue.jsonl", max_bytes=1_000_000, warn_bytes=500_000)


def test_lines_are_the_payload_plus_failed_at_attempts_and_last_error(queue: FailureQueue) -> None:
    queue.append(payload(1), 4, "HTTP 503: Database unavailable")
    [line] = lines(queue)
    assert {k: line[k] for k in payload(1)} == payload(1)
    assert line["attempts"] == 4 and line["lastError"] == "HTTP 503: Database unavailable"
    assert line["failedAt"].endswith("Z")
    assert set(line) == set(payload(1)) | {"failedAt", "attempts", "lastError"}
    assert queue.path.read_bytes().endswith(b"\n")
    assert (queue.path.stat().st_mode & 0o777) == 0o600


def test_status_counts_lines_bytes_and_oldest(queue: FailureQueue) -> None:
    assert queue.status().lines == 0 and queue.status().bytes == 0 and queue.status().oldest_failed_at is None
    for i in range(1, 4):
        queue.append(payload(i), 4, "timeout")
    status = queue.status()
    assert status.lines == 3
    assert status.bytes == queue.path.stat().st_size
    assert status.oldest_failed_at == lines(queue)[0]["failedAt"]


def test_over_warning_size_logs_once(tmp_path: Path) -> None:
    queue = FailureQueue(tmp_path / "q.jsonl", max_bytes=100_000, warn_bytes=1000)
    with capture_logs() as logs:
        for i in range(10):
            queue.append(payload(i + 1), 4, "HTTP 503")
    warnings = [r for r in logs if r["event"] == "Failure queue over warning size"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert queue.over_warning


def test_at_the_cap_nothing_is_written_and_the_caller_is_told(tmp_path: Path) -> None:
    queue = FailureQueue(tmp_path / "q.jsonl", max_bytes=500, warn_bytes=100)
    queue.append(payload(1), 4, "HTTP 503")
    before = queue.path.read_bytes()
    with pytest.raises(QueueFullError):
        queue.append(payload(2), 4, "HTTP 503")
    assert queue.path.read_bytes() == before


def test_full_disk_leaves_only_whole_lines(tmp_path: Path) -> None:
    with TinyFilesystem(tmp_path / "small", size_kib=64) as fs:
        queue = FailureQueue(fs.path / "q.jsonl", max_bytes=10_000_000, warn_bytes=10_000_000)
        queue.append(payload(1), 4, "HTTP 503")
        filler = fill(fs.path)
        with pytest.raises(OSError):
            queue.append({**payload(2), "text": "z" * 8000}, 4, "HTTP 503")
        assert [line["messageId"] for line in lines(queue)] == [1]
        filler.unlink()
        queue.append(payload(3), 4, "HTTP 503")
        assert [line["messageId"] for line in lines(queue)] == [1, 3]


async def test_replay_removes_only_delivered_lines_and_updates_the_rest(queue: FailureQueue) -> None:
    for i in range(1, 11):
        queue.append(payload(i), 4, "HTTP 503")
    with queue.path.open("ab") as fh:
        fh.write(b"this line is not json\n")
    sent: list[int] = []

    async def send(p: IngestPayload) -> ReplayOutcome:
        sent.append(p["messageId"])
        assert "failedAt" not in p and "attempts" not in p and "lastError" not in p
        if p["messageId"] % 2:
            return ReplayOutcome(delivered=False, error=REJECTED_PREFIX + "HTTP 400: Validation failed")
        return ReplayOutcome(delivered=True)

    report = await queue.replay(each(send), rewrite_every_s=0.0)
    assert sent == list(range(1, 11))
    assert (report.delivered, report.failed, report.remaining, report.corrupt) == (5, 5, 5, 1)
    [sidecar] = queue.corrupt_files()
    assert sidecar.read_bytes() == b"this line is not json\n"
    remaining = [json.loads(r) for r in queue.path.read_bytes().splitlines()]
    assert [r["messageId"] for r in remaining] == [1, 3, 5, 7, 9]
    assert all(r["attempts"] == 5 and r["lastError"].startswith(REJECTED_PREFIX) for r in remaining)


async def test_replay_stops_when_the_api_is_unreachable_and_keeps_the_rest(queue: FailureQueue) -> None:
    for i in range(1, 6):
        queue.append(payload(i), 4, "HTTP 503")

    async def send(p: IngestPayload) -> ReplayOutcome:
        if p["messageId"] <= 2:
            return ReplayOutcome(delivered=True)
        return ReplayOutcome(delivered=False, error="ConnectError: refused", unreachable=True)

    report = await queue.replay(each(send))
    assert report.unreachable and report.delivered == 2
    assert [r["messageId"] for r in lines(queue)] == [3, 4, 5]
    assert all(r["lastError"] == "ConnectError: refused" and r["attempts"] == 5 for r in lines(queue))


async def test_lines_appended_during_a_replay_are_kept(queue: FailureQueue) -> None:
    for i in range(1, 4):
        queue.append(payload(i), 4, "HTTP 503")

    async def send(p: IngestPayload) -> ReplayOutcome:
        queue.append(payload(100 + p["messageId"]), 4, "HTTP 503")  # the publisher keeps failing meanwhile
        return ReplayOutcome(delivered=True)

    report = await queue.replay(each(send), rewrite_every_s=0.0)
    assert report.delivered == 3
    assert [r["messageId"] for r in lines(queue)] == [101, 102, 103]


async def test_automatic_replay_skips_lines_the_api_refused(queue: FailureQueue) -> None:
    queue.append(payload(1), 1, REJECTED_PREFIX + "HTTP 400: Validation failed")
    queue.append(payload(2), 4, "HTTP 503")
    sent: list[int] = []

    async def send(p: IngestPayload) -> ReplayOutcome:
        sent.append(p["messageId"])
        return ReplayOutcome(delivered=True)

    await queue.replay(each(send), include_permanent=False)
    assert sent == [2]
    assert [r["messageId"] for r in lines(queue)] == [1]


async def test_only_one_replay_at_a_time(queue: FailureQueue) -> None:
    queue.append(payload(1), 4, "HTTP 503")
    inner: list[Any] = []

    async def send(p: IngestPayload) -> ReplayOutcome:
        inner.append(await queue.replay(each(send)))
        return ReplayOutcome(delivered=True)

    await queue.replay(each(send))
    assert inner[0].errors == ["another replay is already running"] and inner[0].delivered == 0
    assert queue.status().lines == 0


async def test_large_queue_replays_in_order_with_periodic_rewrites(queue: FailureQueue) -> None:
    for i in range(1, 301):
        queue.append(payload(i), 4, "HTTP 503")
    sent: list[int] = []

    async def send(p: IngestPayload) -> ReplayOutcome:
        sent.append(p["messageId"])
        if p["messageId"] % 3 == 0:
            return ReplayOutcome(delivered=False, error="HTTP 400: bad")
        return ReplayOutcome(delivered=True)

    report = await queue.replay(each(send), rewrite_every_s=0.0)
    assert sent == list(range(1, 301))
    assert report.delivered == 200 and report.remaining == 100
    assert [r["messageId"] for r in lines(queue)] == list(range(3, 301, 3))


async def test_a_line_glued_onto_a_torn_tail_is_recovered_and_the_tail_set_aside(queue: FailureQueue) -> None:
    # what an older version left behind: a torn line with the next whole line appended onto it
    torn = json.dumps(payload(1)).encode()[:40]
    whole = FailureQueue.encode(payload(2), 4, "HTTP 503")
    queue.path.write_bytes(torn + whole)
    queue.append(payload(3), 4, "HTTP 503")
    sent: list[int] = []

    async def send(p: IngestPayload) -> ReplayOutcome:
        sent.append(p["messageId"])
        return ReplayOutcome(delivered=True)

    corrupt: list[int] = []
    queue.on_corrupt = corrupt.append
    with capture_logs() as logs:
        report = await queue.replay(each(send))
    assert sent == [2, 3] and report.remaining == 0 and report.corrupt == 1
    assert queue.corrupt_files()[0].read_bytes() == torn + b"\n"
    assert queue.corrupt_lines() == 1 and corrupt == [1]
    assert any(r["event"] == "Failure queue lines unreadable, set aside" for r in logs)


def test_an_append_after_a_torn_tail_starts_on_a_fresh_line(queue: FailureQueue) -> None:
    queue.append(payload(1), 4, "HTTP 503")
    with queue.path.open("ab") as fh:
        fh.write(b'{"channelId":"-1001649127710","messageId":2,"te')
    queue.append(payload(3), 4, "HTTP 503")
    assert [r["messageId"] for r in lines(queue)] == [1, 3]
    [sidecar] = queue.corrupt_files()
    assert sidecar.read_bytes() == b'{"channelId":"-1001649127710","messageId":2,"te\n'
    assert sidecar.stat().st_mode & 0o777 == 0o600


async def test_replay_sends_batches_of_at_most_the_limit(queue: FailureQueue) -> None:
    for i in range(1, 26):
        queue.append(payload(i), 4, "HTTP 503")
    batches: list[list[int]] = []

    async def send(payloads: list[IngestPayload]) -> list[ReplayOutcome]:
        batches.append([p["messageId"] for p in payloads])
        return [ReplayOutcome(delivered=p["messageId"] != 12, error="rejected by API: bad") for p in payloads]

    report = await queue.replay(send, batch_max=10)
    assert batches == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    assert (report.delivered, report.failed, report.remaining) == (24, 1, 1)
    assert [r["messageId"] for r in lines(queue)] == [12]


async def test_a_batch_the_api_did_not_take_stops_the_replay_and_keeps_every_line(queue: FailureQueue) -> None:
    for i in range(1, 26):
        queue.append(payload(i), 4, "HTTP 503")
    batches = 0

    async def send(payloads: list[IngestPayload]) -> list[ReplayOutcome]:
        nonlocal batches
        batches += 1
        if batches == 1:
            return [ReplayOutcome(delivered=True) for _ in payloads]
        return [ReplayOutcome(delivered=False, error="HTTP 503", unreachable=True) for _ in payloads]

    report = await queue.replay(send, batch_max=10)
    assert batches == 2 and report.unreachable and report.delivered == 10
    assert [r["messageId"] for r in lines(queue)] == list(range(11, 26))
    assert [r["attempts"] for r in lines(queue)] == [5] * 10 + [4] * 5
