"""Runs the Bot API stand-in (tests/support/fake_bot_api.py) as a service inside the systemd test machine."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tests.support.fake_bot_api import FakeBotApi


async def serve(port: int, token: str) -> None:
    bot = FakeBotApi(token)
    bot.port = port
    await bot.start()
    print(f"Bot API stand-in listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await bot.stop()


if __name__ == "__main__":
    # The token comes from the environment: a command line is visible to every user and to the journal.
    asyncio.run(serve(int(sys.argv[1]), os.environ["BOT_TOKEN"]))
