"""Gateway peak RSS by source configuration: none, bot, user account, both.

Run from the repository root: ``python -m bench.bench_gateway_memory`` (about a minute; ``--runs 1 --settle 2``
for a smoke run). Writes ``gateway_memory.json`` where the other results go. For each configuration the real
``tradingsystem serve gateway`` runs pinned to core 0 from an empty directory, until its ``/health/live``
answers and then ``--settle`` seconds more; its ``VmHWM`` (peak resident set) is read from ``/proc``. The bot
source polls the stand-in Bot API of ``tests/support/fake_bot_api.py`` (run in this process), so aiogram really
works: it is sent 300 channel posts and 30 edits (some with photos, some forwarded) before the memory is read.
The user source is given an API id and hash but no session, so Telethon is loaded and waits for a login
(``login_required``) without touching the network. No API is needed: the gateway journals what it gets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.bench_gateway import PinnedService
from bench.common import SERVER_CORE, log, machine_info, write_result
from tradingsystem.core.embedded import free_port

CONFIGS = ("none", "bot", "user", "both")
CHANNEL = -1001649127710
POSTS = 300  # channel posts the bot receives in each bot run (and 30 edits)
BUDGET_MB = 150.0  # the seed's own limit for the gateway


class LiveGateway(PinnedService):
    """Ready when `/health/live` answers: `/health` is 503 by contract while no source can work."""

    ready_path = "/health/live"

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as answer:
                body: dict[str, Any] = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        return body


class StandInBotApi:
    """tests/support/fake_bot_api.py on an event loop of its own thread."""

    def __init__(self) -> None:
        from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotApi

        self.token = DEFAULT_TOKEN
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = asyncio.run_coroutine_threadsafe(FakeBotApi().start(), self.loop).result(30)

    def post(self, channel: int, count: int) -> None:
        """Queue `count` channel posts (text, photos, forwards, edits), as a live channel sends them."""
        async def queue() -> None:
            for i in range(1, count + 1):
                self.fake.channel_post(channel, f"Ativo: PETR4\nCompra: 38,{i % 100:02d}\nAlvo 1: 40,00\nStop: 37,00",
                                       message_id=i, date=int(time.time()), photo=i % 5 == 0,
                                       forward_from=(channel - 1, i, int(time.time())) if i % 7 == 0 else None)
                if i % 10 == 0:
                    self.fake.channel_post(channel, f"edited {i}", message_id=i, date=int(time.time()),
                                           edit_date=int(time.time()))

        asyncio.run_coroutine_threadsafe(queue(), self.loop).result(30)

    def drained(self) -> bool:
        return not self.fake.pending_ids

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def env_for(config: str, data_dir: Path, port: int, bot: StandInBotApi) -> dict[str, str]:
    env = {"GATEWAY_SECRET_TOKEN": secrets.token_hex(24), "GATEWAY_PORT": str(port), "HOST": "127.0.0.1",
           "API_ENDPOINT": f"http://127.0.0.1:{free_port()}/ingest", "GATEWAY_DATA_DIR": str(data_dir),
           "TELEGRAM_SOURCE_CHANNEL_IDS": str(CHANNEL), "LOG_LEVEL": "INFO"}
    if config in ("bot", "both"):
        env.update({"TELEGRAM_INGESTION_BOT_TOKEN": bot.token, "TELEGRAM_BOT_API_URL": bot.fake.base_url})
    if config in ("user", "both"):
        env.update({"TELEGRAM_API_ID": "12345", "TELEGRAM_API_HASH": "0123456789abcdef0123456789abcdef"})
    return env


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="starts of each configuration")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of running after it answers")
    args = parser.parse_args(argv)
    info = machine_info()
    bot = StandInBotApi()
    seen: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    try:
        for attempt in range(args.runs):
            for config in CONFIGS:
                with tempfile.TemporaryDirectory(prefix="ts-bench-gwmem-") as tmp:
                    port = free_port()
                    svc = LiveGateway("gateway", env_for(config, Path(tmp) / "data", port, bot), port, SERVER_CORE)
                    with svc:
                        if config in ("bot", "both"):
                            # The bot source really works: it validates each update with aiogram's models.
                            bot.post(CHANNEL, POSTS)
                            deadline = time.monotonic() + 60
                            while not bot.drained() and time.monotonic() < deadline:
                                time.sleep(0.1)
                        time.sleep(args.settle)
                        health = svc.health()
                        figures = {**svc.memory(), "telegram": health.get("telegram"),
                                   "sources": health.get("sources"), "journal_pending": health.get("journalPending"),
                                   "bot_updates_left": len(bot.fake.pending_ids)}
                    seen[config].append(figures)
                    log(f"run {attempt + 1} {config}: peak {figures['peak_rss_mb']} MB, telegram "
                        f"{figures['telegram']}")
    finally:
        bot.close()
    table = {c: {"peak_rss_mb": [r["peak_rss_mb"] for r in runs],
                 "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                 "within_budget": statistics.median(r["peak_rss_mb"] for r in runs) < BUDGET_MB,
                 "telegram": runs[-1]["telegram"], "sources": runs[-1]["sources"]} for c, runs in seen.items()}
    result = {"benchmark": "gateway_memory", "machine": info, "budget_mb": BUDGET_MB,
              "method": {"runs": args.runs, "settle_s": args.settle, "pinned_core": SERVER_CORE,
                         "python": sys.version.split()[0]},
              "table": table, "runs": seen}
    path = write_result("gateway_memory", result)
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    print(json.dumps(main()["table"], indent=2))
