"""The replay source: feeds a Telegram Desktop export through the journal, one message per interval."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from tradingsystem.gateway.export import ExportError, TelegramExport
from tradingsystem.gateway.types import MessageSink, SourceState

log = structlog.get_logger(__name__)


class ReplaySource:
    """Replays `TELEGRAM_REPLAY_FILE` as source `replay` (demos and tests), then stays idle in state `replay`."""

    name = "replay"

    def __init__(
        self,
        path: Path,
        interval_ms: int = 2000,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.path = Path(path)
        self.interval = max(0, interval_ms) / 1000
        self._sleep = sleep
        self._state: SourceState = "replay"
        self.delivered = 0
        self.finished = asyncio.Event()

    @property
    def state(self) -> SourceState:
        return self._state

    async def run(self, sink: MessageSink) -> None:
        export = TelegramExport(self.path, source="replay")
        log.info("Replay started", path=str(self.path), interval_ms=int(self.interval * 1000))
        try:
            first = True
            for payload in export.payloads():
                if not first and self.interval:
                    await self._sleep(self.interval)
                first = False
                await sink(payload)
                self.delivered += 1
        except ExportError as exc:
            log.error("Replay file unusable", path=str(self.path), error=str(exc))
            self._state = "disconnected"
        else:
            log.info("Replay finished", path=str(self.path), delivered=self.delivered, **export.stats.as_dict())
        self.finished.set()
        # A source runs until cancelled; the replay has nothing more to say.
        await asyncio.Event().wait()
