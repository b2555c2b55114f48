"""The user-account source: Telethon on the SQLite session, live updates, and history backfill on connect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from telethon import events
from telethon.errors import FloodWaitError, RPCError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential, wait_random

from tradingsystem.gateway.sessions import SessionStatus, SessionStore, auth_key_dead_errors
from tradingsystem.gateway.sources.telethon_adapter import (
    backfill_payloads,
    deleted_to_payloads,
    message_to_payload,
)
from tradingsystem.gateway.types import CursorReader, IngestPayload, MessageSink, Monitored, SourceState

log = structlog.get_logger(__name__)

EventHandler = Callable[[Any], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

# Network trouble that a reconnect with backoff can cure.
_TRANSIENT = (OSError, ConnectionError, asyncio.TimeoutError)


class UserClient(Protocol):
    """The few Telethon client calls the source needs (a `TelegramClient` wrapped by `TelethonUserClient`)."""

    def add_event_handler(self, callback: EventHandler, event: Any) -> None: ...

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def is_user_authorized(self) -> bool:
        """True when logged in; raises Telethon's auth-key errors when the key is revoked or duplicated."""
        ...

    def iter_messages(self, channel_id: int, *, min_id: int, reverse: bool,
                      limit: int | None = None) -> AsyncIterator[Any]: ...

    async def run_until_disconnected(self) -> None: ...


ClientFactory = Callable[[Path], UserClient]


class TelethonUserClient:
    """`UserClient` over a real `TelegramClient` on the SQLite session file (`catch_up=True`)."""

    def __init__(self, session_file: Path, api_id: int, api_hash: str) -> None:
        from telethon import TelegramClient
        from telethon.sessions import SQLiteSession

        self._client = TelegramClient(
            SQLiteSession(str(session_file)),
            api_id,
            api_hash,
            catch_up=True,
            # Handlers journal before returning, in arrival order, so per-channel order is kept.
            sequential_updates=True,
            # Every flood wait reaches the source, which waits it out and counts it in a metric.
            flood_sleep_threshold=0,
            # The source reconnects itself so that each reconnect is followed by a backfill.
            auto_reconnect=False,
            connection_retries=1,
        )

    def add_event_handler(self, callback: EventHandler, event: Any) -> None:
        self._client.add_event_handler(callback, event)

    async def connect(self) -> None:
        await self._client.connect()

    async def disconnect(self) -> None:
        await self._client.disconnect()

    async def is_user_authorized(self) -> bool:
        from telethon import functions
        from telethon.errors import UnauthorizedError

        try:
            # The same probe Telethon uses, minus its habit of turning every RPC error into False.
            await self._client(functions.updates.GetStateRequest())
        except auth_key_dead_errors():
            raise
        except UnauthorizedError:
            return False
        return True

    def iter_messages(self, channel_id: int, *, min_id: int, reverse: bool,
                      limit: int | None = None) -> AsyncIterator[Any]:
        iterator: AsyncIterator[Any] = self._client.iter_messages(channel_id, min_id=min_id, reverse=reverse,
                                                                  limit=limit)
        return iterator

    async def run_until_disconnected(self) -> None:
        await self._client.run_until_disconnected()  # type: ignore[misc]


@dataclass(frozen=True)
class ChannelSync:
    """What an on-demand sync did in one channel: messages read from history, payloads journaled."""

    channel_id: str
    title: str | None
    messages_read: int
    payloads_journaled: int
    error: str | None = None


class SyncUnavailable(Exception):
    """The user account cannot read history right now (not connected, or logged out)."""

    def __init__(self, state: SourceState) -> None:
        super().__init__(state)
        self.state = state


class UserSource:
    """Telegram user account: live new/edit/delete of monitored channels plus backfill after every connect."""

    name = "user"

    def __init__(
        self,
        store: SessionStore,
        client_factory: ClientFactory,
        monitored: Monitored,
        cursors: CursorReader,
        *,
        on_flood_wait: Callable[[int], None] | None = None,
        session_poll_interval: float = 2.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self._factory = client_factory
        self._monitored = monitored
        self._cursors = cursors
        self.on_flood_wait = on_flood_wait
        self._poll = session_poll_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._state: SourceState = "disconnected"
        self._sink: MessageSink | None = None
        self._rejected: tuple[int, int, int] | None = None
        self._client: UserClient | None = None
        self._sync_lock = asyncio.Lock()
        self.connects = 0

    @property
    def state(self) -> SourceState:
        return self._state

    def _set_state(self, state: SourceState) -> None:
        if state != self._state:
            log.info("Telegram user account state changed", source=self.name, old=self._state, new=state)
            self._state = state

    async def run(self, sink: MessageSink) -> None:
        self._sink = sink
        while True:
            status = self.store.prepare()
            signature = self.store.signature()
            if status is not SessionStatus.READY or signature == self._rejected:
                self._set_state("login_required")
                await self._wait_for_new_session(signature)
                continue
            lock = self.store.try_lock()
            if lock is None:
                log.error("Session in use by another process; waiting for it", path=str(self.store.path))
                self._set_state("login_required")
                await self._sleep(self._poll)
                continue
            try:
                await self._use_session(signature)
            finally:
                lock.release()

    async def _wait_for_new_session(self, seen: tuple[int, int, int] | None) -> None:
        if seen is None or seen == self._rejected:
            log.warning(
                "No usable Telegram session; run `tradingsystem gateway login`", path=str(self.store.path)
            )
        while self.store.signature() == seen:
            await self._sleep(self._poll)
        log.info("Session file changed; trying it", path=str(self.store.path))

    async def _use_session(self, signature: tuple[int, int, int] | None) -> None:
        """Connect, backfill, receive; reconnect on network trouble; return when the session is unusable."""
        client = self._factory(self.store.path)
        client.add_event_handler(self._on_new, events.NewMessage())
        client.add_event_handler(self._on_edit, events.MessageEdited())
        client.add_event_handler(self._on_delete, events.MessageDeleted())
        dead = auth_key_dead_errors()
        try:
            while True:
                try:
                    if not await self._connect(client):
                        log.warning("Session is not logged in; run `tradingsystem gateway login`")
                        self._rejected = signature
                        self._set_state("login_required")
                        return
                    self.connects += 1
                    self._client = client
                    self._set_state("connected")
                    await self._backfill(client)
                    await client.run_until_disconnected()
                    log.warning("Telegram user account disconnected")
                    self._set_state("disconnected")
                    # A connection that drops right after connecting must not turn into a busy loop.
                    await self._sleep(self._backoff_initial)
                except dead as exc:
                    await _quietly_disconnect(client)
                    self.store.set_aside_expired(exc)
                    self._set_state("login_required")
                    return
                except FloodWaitError as exc:
                    await _quietly_disconnect(client)
                    self._set_state("disconnected")
                    await self._flood_wait(exc)
                except _TRANSIENT as exc:
                    log.warning("Telegram user account connection lost", error=f"{type(exc).__name__}: {exc}")
                except RPCError as exc:
                    log.error("Telegram refused a request; reconnecting", error=f"{type(exc).__name__}: {exc}")
                    await _quietly_disconnect(client)
                    await self._sleep(self._backoff_initial)
                self._set_state("disconnected")
        finally:
            self._client = None
            await _quietly_disconnect(client)

    async def _connect(self, client: UserClient) -> bool:
        """Connect (retrying network errors with backoff) and report whether the session is logged in."""

        def before_sleep(retry_state: RetryCallState) -> None:
            self._set_state("disconnected")
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            log.warning(
                "Telegram connect failed; retrying",
                attempt=retry_state.attempt_number,
                error=f"{type(error).__name__}: {error}" if error else None,
            )

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            wait=wait_exponential(multiplier=self._backoff_initial, max=self._backoff_max)
            + wait_random(0, self._backoff_initial),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        ):
            with attempt:
                await client.connect()
                return await client.is_user_authorized()
        return False

    async def _flood_wait(self, exc: FloodWaitError) -> None:
        seconds = int(getattr(exc, "seconds", 0) or 0)
        log.warning("Telegram flood wait", seconds=seconds)
        if self.on_flood_wait is not None:
            self.on_flood_wait(seconds)
        await self._sleep(seconds)

    async def _backfill(self, client: UserClient) -> None:
        for channel_id in sorted(self._monitored.channel_ids()):
            cursor = self._cursors.last_acknowledged(channel_id)
            if cursor is None:
                # Nothing of this channel was ever acknowledged: there is no gap to fill, and reading
                # a channel's whole history is what `gateway import` is for.
                continue
            await self._backfill_channel(client, channel_id, cursor)

    async def _backfill_channel(self, client: UserClient, channel_id: str, cursor: int) -> None:
        min_id = cursor
        count = 0
        while True:
            try:
                async for message in client.iter_messages(int(channel_id), min_id=min_id, reverse=True):
                    for payload in backfill_payloads(message):
                        await self._deliver(payload)
                        count += 1
                    min_id = max(min_id, int(message.id))
            except FloodWaitError as exc:
                await self._flood_wait(exc)
                continue
            except (ValueError, RPCError) as exc:
                if isinstance(exc, auth_key_dead_errors()):
                    raise
                # An unknown or private channel must not stop the others from being backfilled.
                log.error("Backfill failed for channel", channel_id=channel_id, error=f"{type(exc).__name__}: {exc}")
                return
            if count:
                log.info("Backfill done", channel_id=channel_id, after=cursor, payloads=count)
            return

    async def sync_history(self, limit: int = 500) -> list[ChannelSync]:
        """Read each monitored channel's history now, at most `limit` messages per channel, into the journal.

        From the channel's cursor when it has one (what the API has not acknowledged yet), else its latest
        `limit` messages. Every payload goes through the sink, so it is journaled and delivered like any
        other; the API drops the ones it already has. One sync runs at a time.
        """
        client = self._client
        if client is None or self._state != "connected" or self._sink is None:
            raise SyncUnavailable(self._state)
        async with self._sync_lock:
            return [await self._sync_channel(client, channel_id, limit)
                    for channel_id in sorted(self._monitored.channel_ids())]

    async def _sync_channel(self, client: UserClient, channel_id: str, limit: int) -> ChannelSync:
        cursor = self._cursors.last_acknowledged(channel_id)
        read = journaled = 0
        title: str | None = None
        try:
            if cursor is not None:
                history = [m async for m in client.iter_messages(int(channel_id), min_id=cursor, reverse=True,
                                                                 limit=limit)]
            else:
                latest = [m async for m in client.iter_messages(int(channel_id), min_id=0, reverse=False,
                                                                limit=limit)]
                history = sorted(latest, key=lambda m: int(m.id))
            for message in history:
                read += 1
                for payload in backfill_payloads(message):
                    title = title or payload.get("chatTitle")
                    await self._deliver(payload)
                    journaled += 1
        except FloodWaitError as exc:
            # A sync is on demand: report the wait instead of holding the caller for it.
            if self.on_flood_wait is not None:
                self.on_flood_wait(int(getattr(exc, "seconds", 0) or 0))
            return ChannelSync(channel_id, title, read, journaled, f"Telegram asked to wait {exc.seconds} s")
        except (ValueError, RPCError) as exc:
            if isinstance(exc, auth_key_dead_errors()):
                raise
            log.error("Sync failed for channel", channel_id=channel_id, error=f"{type(exc).__name__}: {exc}")
            return ChannelSync(channel_id, title, read, journaled, f"{type(exc).__name__}: {exc}")
        log.info("History synced on request", channel_id=channel_id, after=cursor, messages=read, payloads=journaled)
        return ChannelSync(channel_id, title, read, journaled)

    async def _deliver(self, payload: IngestPayload) -> None:
        if self._sink is None or not self._monitored.is_monitored(payload["channelId"]):
            return
        await self._sink(payload)

    async def _on_new(self, event: Any) -> None:
        payload = message_to_payload(event.message, "new", "user")
        if payload is not None:
            await self._deliver(payload)

    async def _on_edit(self, event: Any) -> None:
        payload = message_to_payload(event.message, "edit", "user")
        if payload is not None:
            await self._deliver(payload)

    async def _on_delete(self, event: Any) -> None:
        for payload in deleted_to_payloads(event):
            await self._deliver(payload)


async def _quietly_disconnect(client: UserClient) -> None:
    try:
        await client.disconnect()
    except Exception as exc:  # disconnecting a broken connection must not hide the original trouble
        log.debug("Disconnect failed", error=f"{type(exc).__name__}: {exc}")


def telethon_client_factory(api_id: int, api_hash: str) -> ClientFactory:
    """A `ClientFactory` that builds the real Telethon client for a session file."""

    def build(session_file: Path) -> UserClient:
        return TelethonUserClient(session_file, api_id, api_hash)

    return build
