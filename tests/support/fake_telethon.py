"""A scripted Telegram for the user-account source: real Telethon messages, updates and events, no network."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from telethon.crypto import AuthKey
from telethon.errors import FloodWaitError
from telethon.sessions import SQLiteSession
from telethon.tl import types

from tradingsystem.gateway.sessions import SessionStore

BASE_DATE = datetime(2025, 10, 24, 19, 30, 39, tzinfo=UTC)


def write_telethon_session(path: Path, *, with_key: bool = True) -> None:
    """A real Telethon SQLite session file, as Telethon itself writes it."""
    session = SQLiteSession(str(path))
    session.set_dc(2, "149.154.167.51", 443)
    if with_key:
        session.auth_key = AuthKey(os.urandom(256))
    session.save()
    session.close()


def write_session(store: SessionStore, *, with_key: bool = True) -> None:
    """What `gateway login` leaves behind: a real Telethon session installed atomically."""
    store.secure()
    temp = store.temp_path()
    write_telethon_session(temp, with_key=with_key)
    store.install(temp)


def channel_message(
    channel: int,
    message_id: int,
    text: str = "",
    *,
    minutes: int = 0,
    edited_minutes: int | None = None,
    photo_id: int | None = None,
    forwarded_from: tuple[int, int] | None = None,
) -> types.Message:
    """A real `telethon.tl.types.Message` posted in channel `channel` (bare id, without -100)."""
    media = None
    if photo_id is not None:
        media = types.MessageMediaPhoto(
            photo=types.Photo(id=photo_id, access_hash=99, file_reference=b"\x01", date=BASE_DATE,
                              sizes=[types.PhotoSize(type="x", w=1280, h=853, size=91233)], dc_id=2)
        )
    fwd = None
    if forwarded_from is not None:
        fwd = types.MessageFwdHeader(date=BASE_DATE - timedelta(hours=1),
                                     from_id=types.PeerChannel(forwarded_from[0]),
                                     channel_post=forwarded_from[1])
    return types.Message(
        id=message_id,
        peer_id=types.PeerChannel(channel),
        date=BASE_DATE + timedelta(minutes=minutes),
        message=text,
        post=True,
        media=media,
        fwd_from=fwd,
        edit_date=BASE_DATE + timedelta(minutes=edited_minutes) if edited_minutes is not None else None,
    )


class ScriptedClient:
    """Implements the source's `UserClient` protocol the way Telethon behaves, from a script.

    History is a per-channel list of real Message objects; live updates go through the real Telethon
    event builders (`NewMessage`, `MessageEdited`, `MessageDeleted`) exactly as `TelegramClient` does.
    """

    def __init__(self, session_file: Path, world: TelegramWorld) -> None:
        self.session_file = session_file
        self.world = world
        self.handlers: list[tuple[Callable[[Any], Awaitable[None]], Any]] = []
        self.connected = False
        self._dropped = asyncio.Event()

    def add_event_handler(self, callback: Callable[[Any], Awaitable[None]], event: Any) -> None:
        self.handlers.append((callback, event))

    async def connect(self) -> None:
        self.world.connect_calls += 1
        if self.world.connect_failures > 0:
            self.world.connect_failures -= 1
            raise ConnectionError("Connection to Telegram failed 1 time(s)")
        self.connected = True
        self._dropped = asyncio.Event()
        self.world.live = self

    async def disconnect(self) -> None:
        self.connected = False
        self._dropped.set()
        if self.world.live is self:
            self.world.live = None

    async def is_user_authorized(self) -> bool:
        if self.world.auth_error is not None:
            error, self.world.auth_error = self.world.auth_error, None
            raise error
        return self.world.authorized

    async def iter_messages(self, channel_id: int, *, min_id: int, reverse: bool,
                            limit: int | None = None) -> AsyncIterator[Any]:
        """Telethon's order: oldest first with `reverse`, else newest first; `limit` counts from that end."""
        self.world.iter_calls.append((channel_id, min_id))
        if limit is not None:
            self.world.iter_limits.append((channel_id, limit, reverse))
        flood = self.world.flood_after.pop(channel_id, None)
        yielded = 0
        for message in sorted(self.world.history.get(channel_id, []), key=lambda m: m.id, reverse=not reverse):
            if message.id <= min_id:
                continue
            if limit is not None and yielded == limit:
                return
            if flood is not None and yielded == flood[0]:
                raise FloodWaitError(request=None, capture=flood[1])
            yield message
            yielded += 1

    async def run_until_disconnected(self) -> None:
        await self._dropped.wait()
        self.connected = False

    async def dispatch(self, update: Any) -> int:
        """Feed a raw update through every registered event builder; returns how many handlers ran."""
        ran = 0
        for callback, builder in self.handlers:
            event = type(builder).build(update, None, None)
            if event is not None:
                await callback(event)
                ran += 1
        return ran

    def drop(self) -> None:
        """The network goes away: `run_until_disconnected` returns as Telethon's does."""
        self._dropped.set()


class TelegramWorld:
    """What the scripted Telegram knows: channel histories, failures to inject, calls seen."""

    def __init__(self) -> None:
        self.history: dict[int, list[types.Message]] = {}
        self.authorized = True
        self.auth_error: BaseException | None = None
        self.connect_failures = 0
        self.flood_after: dict[int, tuple[int, int]] = {}
        self.connect_calls = 0
        self.iter_calls: list[tuple[int, int]] = []
        self.iter_limits: list[tuple[int, int, bool]] = []
        self.clients: list[ScriptedClient] = []
        self.live: ScriptedClient | None = None

    def factory(self, session_file: Path) -> ScriptedClient:
        client = ScriptedClient(session_file, self)
        self.clients.append(client)
        return client

    def post(self, channel_marked: int, message: types.Message) -> None:
        self.history.setdefault(channel_marked, []).append(message)

    async def emit_new(self, message: types.Message) -> int:
        assert self.live is not None
        return await self.live.dispatch(types.UpdateNewChannelMessage(message=message, pts=1, pts_count=1))

    async def emit_edit(self, message: types.Message) -> int:
        assert self.live is not None
        return await self.live.dispatch(types.UpdateEditChannelMessage(message=message, pts=1, pts_count=1))

    async def emit_delete(self, channel: int, ids: list[int]) -> int:
        assert self.live is not None
        return await self.live.dispatch(
            types.UpdateDeleteChannelMessages(channel_id=channel, messages=ids, pts=1, pts_count=len(ids))
        )
