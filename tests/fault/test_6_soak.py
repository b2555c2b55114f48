"""Case 6: a 60 s soak at 500 messages per second through the gateway's bot source: no error, RSS recorded."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.harness import (
    BOT_TOKEN,
    Ledger,
    Services,
    channel_id,
    count_rows,
    health,
    stored,
    wait_stored,
)
from tests.support.fake_bot_api import FakeBotApi
from tests.support.servers import ProcessServer, wait_until

pytestmark = pytest.mark.fault

RATE = 500
DURATION_S = 60
WARMUP_S = 5  # RSS is compared from here on: imports and the first requests have happened by then


class BotApiThread:
    """The Bot API stand-in on its own event loop in a thread, fed from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.api = FakeBotApi(BOT_TOKEN)

    def __enter__(self) -> BotApiThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.api.start(), self.loop).result(30)
        return self

    def post(self, chat_id: int, first: int, count: int) -> None:
        def enqueue() -> None:
            for message_id in range(first, first + count):
                self.api.channel_post(chat_id, f"Ativo: PETR4 Compra: 30,10 Alvo 1: 31,00 #{message_id}",
                                      message_id=message_id, date=1_761_000_000 + message_id)

        self.loop.call_soon_threadsafe(enqueue)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.api.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def bot_api() -> Iterator[BotApiThread]:
    with BotApiThread() as instance:
        yield instance


def rss_mb(server: ProcessServer) -> float:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_soak_500_msg_per_s_for_60_s_without_an_error(
        bot_api: BotApiThread, services: Services, shared_api: ProcessServer, fault_db: str, fault_dir: Path,
        ledger: Ledger) -> None:
    number = 1960000001
    channel, total = channel_id(number), RATE * DURATION_S
    gateway = services.gateway(fault_dir / "case6", shared_api.url, name="gateway-soak",
                               TELEGRAM_INGESTION_BOT_TOKEN=BOT_TOKEN, TELEGRAM_BOT_API_URL=bot_api.api.base_url)
    try:
        gateway.wait_healthy(90)
        wait_until(lambda: health(gateway).get("telegram") == "connected", 90, message="the bot connected")
        samples: list[tuple[float, float]] = []
        tick, started, sent = 0.1, time.monotonic(), 0
        while sent < total:
            due = min(total, int((time.monotonic() - started) * RATE))  # what the schedule says is due by now
            if due > sent:
                bot_api.post(int(channel), sent + 1, due - sent)
                sent = due
            elapsed = time.monotonic() - started
            if not samples or elapsed - samples[-1][0] >= 1:
                samples.append((elapsed, rss_mb(gateway)))
            time.sleep(tick)
        feeding = time.monotonic() - started
        lag = wait_stored(fault_db, channel, total, 120, "every soaked message stored")
        wait_until(lambda: health(gateway)["journalPending"] == 0, 60, message="journal drained")
        samples.append((time.monotonic() - started, rss_mb(gateway)))
        body = health(gateway)
    finally:
        gateway.stop()
    counts = count_rows(fault_db, channel)
    after_warmup = [rss for at, rss in samples if at >= WARMUP_S]
    first, last, peak = after_warmup[0], after_warmup[-1], max(after_warmup)
    problems = [line for line in gateway.output().splitlines()
                if line.startswith("{") and json.loads(line)["level"] in ("error", "warn")]
    ledger.add(f"6. soak {RATE} msg/s for {DURATION_S} s (bot source)", sent=total, counts=counts, seconds=lag,
               seconds_label="last message stored after the feed in",
               note=f"fed in {feeding:.1f} s; gateway RSS {first:.1f} MB at {WARMUP_S} s, {last:.1f} MB at the end "
                    f"(growth {last - first:+.1f} MB, peak {peak:.1f} MB); {len(problems)} error/warning lines")
    assert not problems, problems[:5]
    assert body["status"] == "healthy", body
    assert (counts.distinct, counts.duplicated) == (total, 0)
    assert stored(fault_db, channel) == total
