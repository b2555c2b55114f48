"""`tradingsystem gateway import`: backfill a channel from a Telegram Desktop export through the journal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import structlog

from tradingsystem.gateway.export import TelegramExport
from tradingsystem.gateway.failure_queue import FailureQueue, QueueFullError
from tradingsystem.gateway.journal import Journal
from tradingsystem.gateway.publisher import BATCH_MAX, IngestClient, RetrySchedule
from tradingsystem.gateway.settings import GatewaySettings
from tradingsystem.gateway.types import IngestPayload

log = structlog.get_logger(__name__)


@dataclass
class ImportSummary:
    delivered: int = 0
    duplicate: int = 0
    skipped: int = 0
    failed: int = 0
    messages: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "delivered": self.delivered, "duplicate": self.duplicate,
                "skipped": self.skipped, "failed": self.failed}


def _chunks(items: Iterator[IngestPayload], size: int) -> Iterator[list[IngestPayload]]:
    while chunk := list(islice(items, size)):
        yield chunk


async def import_export(settings: GatewaySettings, path: Path,
                        progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Journal each chunk durably, post it to `/ingest/batch`, then settle every message of the chunk.

    A crash at any point loses nothing: a journaled message that was not settled is still pending, and the
    gateway re-sends it at its next start (the API drops what it already has).
    """
    export = TelegramExport(path, source="import")
    summary = ImportSummary()
    journal = Journal(settings.gateway_data_dir / "journal.db").open()
    queue = FailureQueue(settings.queue_path, settings.failure_queue_max_bytes, settings.failure_queue_warn_bytes)
    client = IngestClient(settings.api_endpoint, settings.tokens[0], settings.api_timeout_ms)
    schedule = RetrySchedule(settings.max_retries, settings.base_retry_delay_ms)
    async def settle(chunk: list[IngestPayload], seqs: list[int]) -> None:
        results = await client.send_batch(chunk, schedule)
        delivered: list[int] = []
        for seq, payload, result in zip(seqs, chunk, results, strict=True):
            if result.delivered:
                delivered.append(seq)
                if result.duplicate:
                    summary.duplicate += 1
                else:
                    summary.delivered += 1
                continue
            summary.failed += 1
            error = result.error or "not delivered"
            try:
                queue.append(payload, schedule.max_retries + 1, error)
                journal.mark_queued(seq, schedule.max_retries + 1, error)
            except QueueFullError:
                journal.mark_held(seq, schedule.max_retries + 1, error)
        journal.mark_delivered(delivered)
        if progress is not None:
            progress(len(chunk))

    in_flight: asyncio.Task[None] | None = None
    try:
        for chunk in _chunks(export.payloads(), BATCH_MAX):
            # The next chunk is read and journaled while the previous one is with the API; chunks are still
            # sent one after another, so the channel's order is kept.
            seqs = await asyncio.to_thread(journal.append_many, chunk)
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.create_task(settle(chunk, seqs))
        if in_flight is not None:
            await in_flight
            in_flight = None
    finally:
        if in_flight is not None:
            in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await in_flight
        await client.aclose()
        journal.close()
    summary.messages = export.stats.messages
    summary.skipped = export.stats.skipped_total
    log.info("Import finished", path=str(path), channel_id=export.channel_id, **summary.as_dict())
    return summary
