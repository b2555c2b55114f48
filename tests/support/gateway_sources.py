"""Helpers for the gateway source tests: a sink that records payloads, a static channel set, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tradingsystem.gateway.types import IngestPayload, MessageSink, Source


class StaticMonitored:
    """The configured channel set alone (`TELEGRAM_SOURCE_CHANNEL_IDS`); empty monitors every channel."""

    def __init__(self, ids: tuple[str, ...] = ()) -> None:
        self._ids = frozenset(ids)

    def is_monitored(self, channel_id: str) -> bool:
        return not self._ids or channel_id in self._ids

    def channel_ids(self) -> frozenset[str]:
        return self._ids


class RecordingSink:
    """Records what a source hands over; `before` may block or raise to play a slow or failing journal."""

    def __init__(self, before: Callable[[IngestPayload], Awaitable[None]] | None = None) -> None:
        self.payloads: list[IngestPayload] = []
        self.attempts: list[IngestPayload] = []
        self._before = before

    async def __call__(self, payload: IngestPayload) -> None:
        self.attempts.append(payload)
        if self._before is not None:
            await self._before(payload)
        self.payloads.append(payload)

    def keys(self) -> list[tuple[Any, ...]]:
        return [(p["channelId"], p["messageId"], p["kind"]) for p in self.payloads]


async def wait_until(predicate: Callable[[], bool], within: float = 15.0, what: str = "condition") -> None:
    """Wait for `predicate` with a deadline (the event loop keeps running the code under test)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(source: Source, sink: MessageSink) -> AsyncIterator[asyncio.Task[None]]:
    """Run `source` in a task for the duration of the block, then cancel it and surface any crash."""
    task = asyncio.create_task(source.run(sink))
    try:
        yield task
    finally:
        crashed = task.done() and not task.cancelled() and task.exception() is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if crashed:
            raise AssertionError("the source crashed") from task.exception()
