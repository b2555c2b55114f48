"""The bot source: aiogram long polling whose offsets are confirmed only after the journal has each update."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from tradingsystem.gateway.sources.aiogram_import import complete, import_aiogram

# Before any aiogram import: its models are then built when first used, not all at once (aiogram_import.py).
import_aiogram()

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import CopyMessage, DeleteWebhook, GetMe
from aiogram.methods.base import TelegramMethod
from aiogram.types import Message, MessageId, MessageOriginChannel, Update, User
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from pydantic import ValidationError

from tradingsystem.gateway.sources.common import BOT_PHOTO_PREFIX, Kind, iso_from_unix, iso_utc, make_payload
from tradingsystem.gateway.types import IngestPayload, MessageSink, Monitored, SourceState

log = structlog.get_logger(__name__)
# What this source sends and validates, built now; aiogram's other models stay unbuilt (aiogram_import.py).
complete(Update, Message, MessageOriginChannel, User, MessageId, GetMe, DeleteWebhook, CopyMessage)

ALLOWED_UPDATES = ["channel_post", "edited_channel_post", "message", "edited_message"]
_GROUP_TYPES = frozenset({"group", "supergroup"})
# Telegram allows a bot about 20 messages a minute into one group or channel.
DEFAULT_FORWARD_RATE = "20/minute"


class _GetRawUpdates(TelegramMethod[list[Any]]):
    """`getUpdates` returning the raw update objects, so one malformed update cannot spoil a batch."""

    __returning__ = list[Any]
    __api_method__ = "getUpdates"

    offset: int | None = None
    limit: int | None = None
    timeout: int | None = None
    allowed_updates: list[str] | None = None


def token_fingerprint(token: str) -> str:
    """A short SHA-256 fingerprint an operator can recognise a token by; the token itself is never logged."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _forwarded_from(message: Message) -> dict[str, object] | None:
    origin = message.forward_origin
    if isinstance(origin, MessageOriginChannel):
        return {"channelId": str(origin.chat.id), "messageId": origin.message_id, "date": iso_utc(origin.date)}
    return None


def message_to_payload(message: Message, kind: Kind) -> IngestPayload | None:
    """The payload for a Bot API channel post or group message; None when it has neither text nor photo."""
    text = message.text or message.caption or ""
    photos = [f"{BOT_PHOTO_PREFIX}{message.photo[-1].file_id}"] if message.photo else []
    if not text.strip() and not photos:
        return None
    edit_date: str | None = None
    if kind == "edit":
        edited: Any = message.edit_date  # aiogram keeps this one as unix seconds, not a datetime
        if isinstance(edited, datetime):
            edit_date = iso_utc(edited)
        elif isinstance(edited, int) and edited > 0:
            edit_date = iso_from_unix(edited)
        else:
            edit_date = iso_utc(datetime.now(UTC))
    return make_payload(
        channel_id=str(message.chat.id),
        message_id=message.message_id,
        timestamp=iso_utc(message.date),
        text=text,
        kind=kind,
        source="bot",
        edit_date=edit_date,
        photos=photos,
        chat_title=message.chat.title,
        forwarded_from=_forwarded_from(message),
        reply_to_message_id=message.reply_to_message.message_id if message.reply_to_message else None,
    )


def update_to_payload(update: Update) -> IngestPayload | None:
    """The payload an update carries, or None for updates the gateway does not ingest."""
    if update.channel_post is not None:
        return message_to_payload(update.channel_post, "new")
    if update.edited_channel_post is not None:
        return message_to_payload(update.edited_channel_post, "edit")
    if update.message is not None and update.message.chat.type in _GROUP_TYPES:
        return message_to_payload(update.message, "new")
    if update.edited_message is not None and update.edited_message.chat.type in _GROUP_TYPES:
        return message_to_payload(update.edited_message, "edit")
    return None


class _Forwarder:
    """Copies received posts to the destination channel, paced, off the reception path."""

    def __init__(self, destination: str, rate: str, queue_size: int = 1000) -> None:
        self.destination = destination
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue(maxsize=queue_size)
        self._limit: RateLimitItem = parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.copied = 0
        self.dropped = 0
        self._in_hand = 0

    @property
    def backlog(self) -> int:
        """Messages waiting to be copied, including the one waiting for the pace."""
        return self._queue.qsize() + self._in_hand

    def offer(self, payload: IngestPayload) -> None:
        if payload["kind"] != "new" or payload["channelId"] == self.destination:
            return
        try:
            self._queue.put_nowait((payload["channelId"], payload["messageId"]))
        except asyncio.QueueFull:
            # Forwarding is best effort; reception must never wait for it.
            self.dropped += 1
            log.warning("Forward queue full; message not forwarded", channel_id=payload["channelId"],
                        message_id=payload["messageId"])

    async def run(self, bot: Bot) -> None:
        while True:
            channel_id, message_id = await self._queue.get()
            self._in_hand = 1
            try:
                await self._pace()
                await self._copy(bot, channel_id, message_id)
            finally:
                self._in_hand = 0

    async def _pace(self) -> None:
        while not await self._limiter.hit(self._limit, "forward"):
            stats = await self._limiter.get_window_stats(self._limit, "forward")
            await asyncio.sleep(max(0.05, stats.reset_time - time.time()))

    async def _copy(self, bot: Bot, channel_id: str, message_id: int) -> None:
        for attempt in range(1, 4):
            try:
                await bot(CopyMessage(chat_id=self.destination, from_chat_id=channel_id, message_id=message_id))
                self.copied += 1
                return
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
            except (TelegramNetworkError, TelegramServerError):
                await asyncio.sleep(2**attempt)
            except TelegramAPIError as exc:
                log.warning("Forward refused by Telegram", channel_id=channel_id, message_id=message_id,
                            error=str(exc))
                return
        log.warning("Forward gave up", channel_id=channel_id, message_id=message_id)


class BotSource:
    """Bot API long polling (`channel_post`, `edited_channel_post`, group messages) via aiogram 3."""

    name = "bot"

    def __init__(
        self,
        token: str,
        monitored: Monitored,
        *,
        api_url: str = "https://api.telegram.org",
        destination_channel_id: str | None = None,
        poll_timeout: int = 25,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        forward_rate: str = DEFAULT_FORWARD_RATE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._token = token
        self._monitored = monitored
        self.api_url = api_url
        self._poll_timeout = poll_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._state: SourceState = "disconnected"
        self._failures = 0
        self._sink_failures = 0
        self.offset: int | None = None
        self.malformed = 0
        # What the control surface reports about the bot (never its token).
        self.username: str | None = None
        self.bot_id: int | None = None
        self.last_seen: datetime | None = None
        self.forwarder = _Forwarder(destination_channel_id, forward_rate) if destination_channel_id else None

    @property
    def state(self) -> SourceState:
        return self._state

    def _connected(self) -> None:
        self._failures = 0
        if self._state != "connected":
            log.info("Telegram bot connected", source=self.name, api_url=self.api_url)
            self._state = "connected"

    async def _trouble(self, message: str, exc: BaseException) -> None:
        """Report a failed call, go `disconnected`, and wait the next exponential backoff step."""
        self._failures += 1
        delay = min(self._backoff_max, self._backoff_initial * 2 ** (self._failures - 1))
        if self._state != "disconnected":
            log.warning("Telegram bot disconnected", source=self.name)
        self._state = "disconnected"
        log.warning(message, error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))
        await self._sleep(delay)

    async def run(self, sink: MessageSink) -> None:
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.api_url))
        bot = Bot(self._token, session=session)
        forwarding: asyncio.Task[None] | None = None
        log.info("Telegram bot source starting", token_fingerprint=token_fingerprint(self._token),
                 api_url=self.api_url)
        try:
            await self._start(bot)
            if self.forwarder is not None:
                forwarding = asyncio.create_task(self.forwarder.run(bot), name="bot-forwarder")
            while True:
                updates = await self._get_updates(bot)
                if updates is None:
                    continue
                await self._handle(bot, updates, sink)
        finally:
            if forwarding is not None:
                forwarding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarding
            await session.close()

    async def _start(self, bot: Bot) -> None:
        while True:
            try:
                # Long polling and a webhook exclude each other; pending updates are kept.
                await bot(DeleteWebhook(drop_pending_updates=False))
                me = await bot(GetMe())
            except (TelegramAPIError, ClientDecodeError) as exc:
                await self._trouble("Telegram bot start failed", exc)
                continue
            log.info("Telegram bot ready", bot_id=me.id, username=me.username)
            self.username, self.bot_id = me.username, me.id
            self._connected()
            return

    async def _get_updates(self, bot: Bot) -> list[Any] | None:
        method = _GetRawUpdates(
            offset=self.offset, timeout=self._poll_timeout, allowed_updates=ALLOWED_UPDATES
        )
        try:
            result = await bot(method, request_timeout=self._poll_timeout + 15)
        except TelegramRetryAfter as exc:
            log.warning("Telegram asks the bot to wait", seconds=exc.retry_after)
            await self._sleep(exc.retry_after)
            return None
        except (TelegramAPIError, ClientDecodeError) as exc:
            await self._trouble("getUpdates failed", exc)
            return None
        self.last_seen = datetime.now(UTC)
        self._connected()
        return result

    async def _handle(self, bot: Bot, raw_updates: list[Any], sink: MessageSink) -> None:
        for raw in raw_updates:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                self.malformed += 1
                log.warning("Malformed update ignored", reason="no update_id", raw=repr(raw)[:200])
                continue
            if self.offset is not None and update_id < self.offset:
                continue
            payload = self._decode(bot, raw, update_id)
            if payload is not None and self._monitored.is_monitored(payload["channelId"]):
                try:
                    await sink(payload)
                except Exception as exc:
                    # Not confirmed: the next getUpdates starts at this update and Telegram resends it.
                    self.offset = update_id
                    await self._trouble_sink(exc, update_id)
                    return
                self._sink_failures = 0
                if self.forwarder is not None:
                    self.forwarder.offer(payload)
            self.offset = update_id + 1

    async def _trouble_sink(self, exc: Exception, update_id: int) -> None:
        self._sink_failures += 1
        delay = min(self._backoff_max, self._backoff_initial * 2 ** (self._sink_failures - 1))
        log.error("Journal refused an update; it will be received again", update_id=update_id,
                  error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))
        await self._sleep(delay)

    def _decode(self, bot: Bot, raw: dict[str, Any], update_id: int) -> IngestPayload | None:
        try:
            update = Update.model_validate(raw, context={"bot": bot})
            return update_to_payload(update)
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            self.malformed += 1
            log.warning("Malformed update ignored", update_id=update_id, error=str(exc).splitlines()[0][:300])
            return None
