"""`build_sources` picks each configured source independently; the replay source paces an export."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.gateway_sources import RecordingSink, StaticMonitored, running, wait_until

from tradingsystem.gateway.cursors import Cursors
from tradingsystem.gateway.export import TelegramExport, bundled_sample_export
from tradingsystem.gateway.settings import GatewaySettings
from tradingsystem.gateway.sources import build_sources
from tradingsystem.gateway.sources.bot import BotSource
from tradingsystem.gateway.sources.replay import ReplaySource
from tradingsystem.gateway.sources.user import UserSource

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"


def settings_for(tmp_path: Path, **extra: Any) -> GatewaySettings:
    values: dict[str, Any] = {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_SECRET_TOKEN": "t" * 32}
    values.update(extra)
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


def build(tmp_path: Path, **extra: Any) -> list[Any]:
    return list(build_sources(settings_for(tmp_path, **extra), StaticMonitored(), Cursors(tmp_path / "c.json")))


def test_nothing_configured(tmp_path: Path) -> None:
    assert build(tmp_path) == []


def test_each_source_on_its_own_and_together(tmp_path: Path) -> None:
    user = {"TELEGRAM_API_ID": "12345", "TELEGRAM_API_HASH": "0123456789abcdef0123456789abcdef"}
    bot = {"TELEGRAM_INGESTION_BOT_TOKEN": "123456789:AAFakeTokenForTheStandInBotApiServer",
           "TELEGRAM_BOT_API_URL": "http://127.0.0.1:8081", "TELEGRAM_DESTINATION_CHANNEL_ID": "-1002000000001"}
    replay = {"TELEGRAM_REPLAY_FILE": str(bundled_sample_export()), "REPLAY_INTERVAL_MS": "10"}

    (only_user,) = build(tmp_path, **user)
    assert isinstance(only_user, UserSource) and only_user.name == "user"
    assert only_user.store.path == tmp_path / ".session" / "telegram-gateway.session"
    (only_bot,) = build(tmp_path, **bot)
    assert isinstance(only_bot, BotSource) and only_bot.api_url == "http://127.0.0.1:8081"
    assert only_bot.forwarder is not None and only_bot.forwarder.destination == "-1002000000001"
    (only_replay,) = build(tmp_path, **replay)
    assert isinstance(only_replay, ReplaySource) and only_replay.interval == 0.01
    everything = build(tmp_path, **user, **bot, **replay)
    assert [s.name for s in everything] == ["user", "bot", "replay"]
    assert {s.state for s in everything} <= {"disconnected", "replay"}


async def test_replay_paces_the_export_and_stays_in_replay_state() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    path = EXPORTS / "tp_capital_mixed.json"
    expected = list(TelegramExport(path, source="replay").payloads())
    source = ReplaySource(path, 2000, sleep=sleep)
    sink = RecordingSink()
    async with running(source, sink) as task:
        await asyncio.wait_for(source.finished.wait(), 15)
        assert source.state == "replay"
        assert not task.done()
    assert sink.payloads == expected
    assert slept == [2.0] * (len(expected) - 1)
    assert source.delivered == len(expected)


async def test_replay_of_a_broken_file_reports_and_keeps_running(tmp_path: Path) -> None:
    source = ReplaySource(EXPORTS / "truncated.json", 0)
    sink = RecordingSink()
    async with running(source, sink) as task:
        await wait_until(lambda: source.finished.is_set())
        assert source.state == "disconnected"
        assert not task.done()
    missing = ReplaySource(tmp_path / "absent.json", 0)
    async with running(missing, RecordingSink()):
        await wait_until(lambda: missing.finished.is_set())
        assert missing.state == "disconnected"


def test_the_bot_source_builds_only_the_aiogram_models_it_uses_and_the_others_still_work() -> None:
    """A fresh interpreter: aiogram's ~400 models are not all built at import (decision 14), yet any of them
    validates when first used, with aiogram's forward references resolved."""
    # Imported the way the gateway imports it: the bot module first (aiogram comes in through it).
    probe = (
        "import tradingsystem.gateway.sources.bot\n"
        "import aiogram.types as t, aiogram.methods as m\n"
        "built = [n for n in t.__all__ if getattr(getattr(t, n), '__pydantic_complete__', True)]\n"
        "assert t.Update.__pydantic_complete__ and m.CopyMessage.__pydantic_complete__\n"
        "assert not t.Sticker.__pydantic_complete__ and not m.SendPoll.__pydantic_complete__\n"
        "m.SendMessage(chat_id=1, text='x', reply_markup=t.InlineKeyboardMarkup(inline_keyboard=[[\n"
        "    t.InlineKeyboardButton(text='a', url='https://example.org')]]))\n"
        "s = t.Sticker.model_validate({'file_id': 'f', 'file_unique_id': 'u', 'type': 'regular', 'width': 1,\n"
        "    'height': 1, 'is_animated': False, 'is_video': False, 'premium_animation': {'file_id': 'g',\n"
        "    'file_unique_id': 'v', 'file_size': 3}})\n"
        "assert s.premium_animation.file_size == 3\n"
        "print(len(built), len(t.__all__))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    built, total = map(int, result.stdout.split())
    assert total > 300 and built < total / 4
