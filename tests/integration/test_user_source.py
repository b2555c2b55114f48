"""The user-account source end to end with a scripted Telegram that speaks in real Telethon objects."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from telethon.crypto import AuthKey
from telethon.errors import AuthKeyDuplicatedError, FloodWaitError, SessionRevokedError
from telethon.sessions import SQLiteSession

from tests.support.fake_telethon import TelegramWorld, channel_message, write_session
from tests.support.gateway_sources import RecordingSink, StaticMonitored, running, wait_until
from tradingsystem.gateway.cursors import Cursors
from tradingsystem.gateway.sessions import SessionStore
from tradingsystem.gateway.sources.user import UserSource
from tradingsystem.gateway.types import SourceState

CHANNEL = 1649127710
MARKED = "-1001649127710"
OTHER = 1900000002
OTHER_MARKED = "-1001900000002"


class Harness:
    def __init__(self, tmp_path: Path, monitored: tuple[str, ...] = (MARKED,)) -> None:
        self.world = TelegramWorld()
        self.store = SessionStore(tmp_path / ".session", "telegram-gateway")
        self.cursors = Cursors(tmp_path / "cursors.json")
        self.sink = RecordingSink()
        self.slept: list[float] = []
        self.flood_waits: list[int] = []
        self.states: list[SourceState] = []
        self.source = UserSource(
            self.store,
            self.world.factory,
            StaticMonitored(monitored),
            self.cursors,
            on_flood_wait=self.flood_waits.append,
            session_poll_interval=0.02,
            backoff_initial=0.02,
            backoff_max=0.1,
            sleep=self.sleep,
        )

    async def sleep(self, seconds: float) -> None:
        # Waits are recorded at their full length and shortened, so a 30 s flood wait costs nothing.
        self.slept.append(seconds)
        self.states.append(self.source.state)
        await asyncio.sleep(min(seconds, 0.02))

    def kinds(self) -> list[tuple[str, int, str, str]]:
        return [(p["channelId"], p["messageId"], p["kind"], p["source"]) for p in self.sink.payloads]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_live_new_edit_delete(harness: Harness) -> None:
    write_session(harness.store)
    async with running(harness.source, harness.sink):
        await wait_until(lambda: harness.source.state == "connected" and harness.world.live is not None)
        world = harness.world
        await world.emit_new(channel_message(CHANNEL, 444261, "ATIVO: PETR4\nCOMPRA: 25,50\nSTOP: 24,00"))
        await world.emit_new(channel_message(OTHER, 5, "canal não monitorado"))
        await world.emit_edit(channel_message(CHANNEL, 444261, "ATIVO: PETR4\nCOMPRA: 25,60\nSTOP: 24,00",
                                              edited_minutes=2))
        await world.emit_new(channel_message(CHANNEL, 444262, "Gráfico", photo_id=991))
        await world.emit_delete(CHANNEL, [444262])
        await world.emit_delete(OTHER, [5])
    assert harness.kinds() == [
        (MARKED, 444261, "new", "user"),
        (MARKED, 444261, "edit", "user"),
        (MARKED, 444262, "new", "user"),
        (MARKED, 444262, "delete", "user"),
    ]
    edit = harness.sink.payloads[1]
    assert edit["editDate"] == "2025-10-24T19:32:39Z"
    assert edit["text"].startswith("ATIVO: PETR4\nCOMPRA: 25,60")
    assert harness.sink.payloads[2]["photos"] == [f"tg-user:{MARKED}/444262/991"]


async def test_backfill_from_the_cursor_on_connect(harness: Harness) -> None:
    write_session(harness.store)
    for n in range(1, 16):
        harness.world.post(int(MARKED), channel_message(CHANNEL, n, f"mensagem {n}", minutes=n,
                                                        edited_minutes=n + 1 if n == 13 else None))
    harness.world.post(int(OTHER_MARKED), channel_message(OTHER, 1, "outro"))
    harness.cursors.advance(MARKED, 10, flush=True)

    async with running(harness.source, harness.sink):
        await wait_until(lambda: len(harness.sink.payloads) == 6, what="backfilled messages")
        assert harness.source.state == "connected"
    assert harness.kinds() == [
        (MARKED, 11, "new", "backfill"),
        (MARKED, 12, "new", "backfill"),
        (MARKED, 13, "new", "backfill"),
        (MARKED, 13, "edit", "backfill"),
        (MARKED, 14, "new", "backfill"),
        (MARKED, 15, "new", "backfill"),
    ]
    # Channels are read from their cursor only; no cursor, no history read.
    assert harness.world.iter_calls == [(int(MARKED), 10)]


async def test_disconnect_reconnect_backfills_what_was_missed(harness: Harness) -> None:
    write_session(harness.store)
    world = harness.world
    async with running(harness.source, harness.sink):
        await wait_until(lambda: harness.source.state == "connected" and world.live is not None)
        for n in (1, 2):
            message = channel_message(CHANNEL, n, f"ao vivo {n}")
            world.post(int(MARKED), message)
            await world.emit_new(message)
        # The API acknowledged both; then the network goes away for a while.
        harness.cursors.advance(MARKED, 2, flush=True)
        world.connect_failures = 3
        assert world.live is not None
        world.live.drop()
        await wait_until(lambda: harness.source.state == "disconnected", what="disconnected state")
        for n in (3, 4, 5):
            world.post(int(MARKED), channel_message(CHANNEL, n, f"perdida {n}", minutes=n))
        await wait_until(lambda: len(harness.sink.payloads) == 5, what="backfill after reconnect")
        assert harness.source.state == "connected"
    assert harness.kinds() == [
        (MARKED, 1, "new", "user"),
        (MARKED, 2, "new", "user"),
        (MARKED, 3, "new", "backfill"),
        (MARKED, 4, "new", "backfill"),
        (MARKED, 5, "new", "backfill"),
    ]
    assert harness.source.connects == 2
    assert world.connect_calls == 2 + 3  # two good connects, three refused while down
    assert (int(MARKED), 2) in world.iter_calls
    assert "disconnected" in harness.states


async def test_flood_wait_during_backfill_waits_counts_and_resumes(harness: Harness) -> None:
    write_session(harness.store)
    for n in range(1, 9):
        harness.world.post(int(MARKED), channel_message(CHANNEL, n, f"m{n}", minutes=n))
    harness.cursors.advance(MARKED, 2, flush=True)
    harness.world.flood_after[int(MARKED)] = (3, 27)  # after 3 messages: FLOOD_WAIT_27
    async with running(harness.source, harness.sink):
        await wait_until(lambda: len(harness.sink.payloads) == 6, what="backfill after the flood wait")
    assert [p["messageId"] for p in harness.sink.payloads] == [3, 4, 5, 6, 7, 8]
    assert harness.flood_waits == [27]
    assert 27 in harness.slept
    # Resumed where it stopped, not from the cursor again.
    assert harness.world.iter_calls == [(int(MARKED), 2), (int(MARKED), 5)]


async def test_flood_wait_on_connect(harness: Harness) -> None:
    write_session(harness.store)
    harness.world.auth_error = FloodWaitError(request=None, capture=12)
    async with running(harness.source, harness.sink):
        await wait_until(lambda: harness.source.state == "connected")
    assert harness.flood_waits == [12]
    assert 12 in harness.slept


async def test_no_session_means_login_required_until_one_appears(harness: Harness) -> None:
    async with running(harness.source, harness.sink) as task:
        await wait_until(lambda: harness.source.state == "login_required")
        assert harness.world.clients == []
        assert not task.done()
        # `tradingsystem gateway login` writes the session while the gateway runs.
        write_session(harness.store)
        await wait_until(lambda: harness.source.state == "connected", what="session adopted")
    assert len(harness.world.clients) == 1


@pytest.mark.parametrize(
    "error",
    [SessionRevokedError(request=None), AuthKeyDuplicatedError(request=None)],
    ids=["revoked", "duplicated"],
)
async def test_rejected_key_is_set_aside_then_a_new_login_is_adopted(
    harness: Harness, error: BaseException
) -> None:
    write_session(harness.store)
    harness.world.auth_error = error
    async with running(harness.source, harness.sink):
        await wait_until(lambda: harness.source.state == "login_required")
        expired = [p.name for p in harness.store.directory.iterdir() if ".session.expired-" in p.name]
        assert len(expired) == 1
        assert not harness.store.path.exists()
        write_session(harness.store)
        await wait_until(lambda: harness.source.state == "connected", what="new session adopted")
    assert len(harness.world.clients) == 2


async def test_not_logged_in_session_waits_for_a_new_file(harness: Harness) -> None:
    write_session(harness.store)
    harness.world.authorized = False
    async with running(harness.source, harness.sink):
        await wait_until(lambda: harness.source.state == "login_required")
        # The same file is not tried again and again.
        polls = len(harness.slept)
        await wait_until(lambda: len(harness.slept) >= polls + 5)
        assert len(harness.world.clients) == 1
        assert harness.store.path.exists()
        harness.world.authorized = True
        write_session(harness.store)
        await wait_until(lambda: harness.source.state == "connected")
    assert len(harness.world.clients) == 2


async def test_corrupt_session_is_set_aside(harness: Harness) -> None:
    harness.store.secure()
    harness.store.path.write_bytes(b"\x00garbage" * 64)
    async with running(harness.source, harness.sink):
        await wait_until(lambda: harness.source.state == "login_required")
        assert any(".session.corrupt-" in p.name for p in harness.store.directory.iterdir())
        assert harness.world.clients == []


async def test_session_in_use_elsewhere_is_not_used(harness: Harness) -> None:
    write_session(harness.store)
    other_process = harness.store.lock()
    try:
        async with running(harness.source, harness.sink):
            await wait_until(lambda: harness.source.state == "login_required")
            assert harness.world.clients == []
            other_process.release()
            await wait_until(lambda: harness.source.state == "connected")
            # While the source uses the session, nobody else can take it.
            assert harness.store.try_lock() is None
        lock = harness.store.try_lock()
        assert lock is not None
        lock.release()
    finally:
        other_process.release()


async def test_wrong_modes_are_tightened_at_start(harness: Harness) -> None:
    write_session(harness.store)
    os.chmod(harness.store.path, 0o644)
    os.chmod(harness.store.directory, 0o755)
    async with running(harness.source, harness.sink):
        await wait_until(lambda: harness.source.state == "connected")
    assert harness.store.path.stat().st_mode & 0o777 == 0o600
    assert harness.store.directory.stat().st_mode & 0o777 == 0o700


async def test_real_telethon_client_unreachable_telegram_is_disconnected_not_fatal(tmp_path: Path) -> None:
    """The real `TelegramClient` (catch_up, sequential updates) against a loopback port that refuses."""
    import socket

    from tradingsystem.gateway.sources.user import telethon_client_factory

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    store = SessionStore(tmp_path / ".session", "telegram-gateway")
    store.secure()
    temp = store.temp_path()
    session = SQLiteSession(str(temp))
    session.set_dc(2, "127.0.0.1", closed_port)
    session.auth_key = AuthKey(os.urandom(256))
    session.save()
    session.close()
    store.install(temp)

    attempts: list[float] = []

    async def sleep(seconds: float) -> None:
        attempts.append(seconds)
        await asyncio.sleep(0.01)

    source = UserSource(
        store,
        telethon_client_factory(12345, "0123456789abcdef0123456789abcdef"),
        StaticMonitored((MARKED,)),
        Cursors(tmp_path / "cursors.json"),
        backoff_initial=0.01,
        backoff_max=0.05,
        sleep=sleep,
    )
    async with running(source, RecordingSink()) as task:
        await wait_until(lambda: len(attempts) >= 2, within=60, what="reconnect attempts")
        assert source.state == "disconnected"
        assert not task.done()
    # The session was not blamed for a network problem.
    assert store.path.exists()
