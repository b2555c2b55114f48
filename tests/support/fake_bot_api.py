"""A stand-in Telegram Bot API server on loopback (real HTTP) for driving the real aiogram client in tests."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from typing import Any

from aiohttp import web

DEFAULT_TOKEN = "123456789:AAFakeTokenForTheStandInBotApiServer"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeBotApi:
    """Implements what the gateway's bot uses: getMe, deleteWebhook, getUpdates (offset, limit, long-poll
    timeout), copyMessage, sendMessage, close, logOut. Controls: enqueue updates (well-formed or not),
    go away and come back on the same port, answer with an HTTP error, hold copyMessage calls."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.port = _free_port()
        self._pending: list[tuple[int, Any]] = []
        self._next_id = 1000
        self.confirmed_offset = 0
        self.offsets_seen: list[int | None] = []
        self.deliveries: Counter[int] = Counter()
        self.calls: Counter[str] = Counter()
        self.copies: list[dict[str, str]] = []
        self.sent: list[dict[str, str]] = []
        self.error_status: int | None = None
        self.retry_after_once: int | None = None
        self._copies_open = asyncio.Event()
        self._copies_open.set()
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._message_ids = Counter[str]()

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._runner is not None

    async def start(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        # No access log: the stand-in would print bot tokens (they are part of Bot API URLs) into the logs
        # that the tests search for leaked secrets.
        runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._closing = False
        self._runner = runner
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._closing = True
        self._copies_open.set()
        async with self._changed:
            self._changed.notify_all()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def go_away(self) -> None:
        """Stop listening (connections refused) but keep every pending update for when it comes back."""
        await self.stop()

    async def come_back(self) -> None:
        await self.start()

    def hold_copies(self) -> None:
        self._copies_open.clear()

    def release_copies(self) -> None:
        self._copies_open.set()

    # -- updates -------------------------------------------------------------------------------------

    def _store(self, body: Any, *, with_id: bool = True) -> int:
        update_id = self._next_id
        self._next_id += 1
        if with_id and isinstance(body, dict):
            body = {"update_id": update_id, **body}
        self._pending.append((update_id, body))
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @property
    def pending_ids(self) -> list[int]:
        return [update_id for update_id, _ in self._pending]

    def enqueue(self, update: dict[str, Any]) -> int:
        """Queue an update body (without `update_id`); returns the id it got."""
        return self._store(update)

    def enqueue_malformed(self, update: dict[str, Any]) -> int:
        """Queue a body that has an `update_id` but does not match the Bot API's Update type."""
        return self._store(update)

    def enqueue_garbage(self, item: Any) -> int:
        """Queue an item sent as-is (no `update_id`); it is dropped once a later update is confirmed."""
        return self._store(item, with_id=False)

    @staticmethod
    def chat(chat_id: int, title: str, kind: str = "channel") -> dict[str, Any]:
        return {"id": chat_id, "title": title, "type": kind}

    def channel_post(
        self,
        chat_id: int,
        text: str | None = None,
        *,
        message_id: int | None = None,
        title: str = "Operações | TP Capital",
        date: int = 1761334239,
        caption: str | None = None,
        photo: bool = False,
        edit_date: int | None = None,
        forward_from: tuple[int, int, int] | None = None,
        sticker: bool = False,
    ) -> int:
        """Queue a `channel_post` (or `edited_channel_post` when `edit_date` is given)."""
        if message_id is None:
            self._message_ids[str(chat_id)] += 1
            message_id = self._message_ids[str(chat_id)]
        chat = self.chat(chat_id, title)
        message: dict[str, Any] = {"message_id": message_id, "sender_chat": chat, "chat": chat, "date": date}
        if text is not None:
            message["text"] = text
        if caption is not None:
            message["caption"] = caption
        if photo:
            message["photo"] = [
                {"file_id": f"AgACAgQAAx0small{message_id}", "file_unique_id": f"s{message_id}",
                 "width": 90, "height": 60, "file_size": 1400},
                {"file_id": f"AgACAgQAAx0large{message_id}", "file_unique_id": f"l{message_id}",
                 "width": 1280, "height": 853, "file_size": 91233},
            ]
        if sticker:
            message["sticker"] = {
                "file_id": "CAACAgQAAx0sticker", "file_unique_id": "st1", "type": "regular",
                "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "🔥",
            }
        if forward_from is not None:
            origin_chat, origin_message, origin_date = forward_from
            message["forward_origin"] = {
                "type": "channel", "chat": self.chat(origin_chat, "B3 Oficial"),
                "message_id": origin_message, "date": origin_date,
            }
        if edit_date is not None:
            message["edit_date"] = edit_date
            return self.enqueue({"edited_channel_post": message})
        return self.enqueue({"channel_post": message})

    def group_message(self, chat_id: int, text: str, *, message_id: int, kind: str = "supergroup",
                      date: int = 1761334239) -> int:
        return self.enqueue(
            {
                "message": {
                    "message_id": message_id,
                    "from": {"id": 777, "is_bot": False, "first_name": "Ana"},
                    "chat": self.chat(chat_id, "Sala de Operações", kind)
                    if kind != "private"
                    else {"id": chat_id, "type": "private", "first_name": "Ana"},
                    "date": date,
                    "text": text,
                }
            }
        )

    # -- HTTP ----------------------------------------------------------------------------------------

    @staticmethod
    def _answer(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(status: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _params(self, request: web.Request) -> dict[str, str]:
        if request.content_type == "application/json":
            data = await request.json()
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        if request.method == "GET":
            return dict(request.query)
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"].lower()
        self.calls[method] += 1
        if self.error_status is not None:
            return web.Response(status=self.error_status, text="<html><body>Bad Gateway</body></html>",
                                content_type="text/html")
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        params = await self._params(request)
        handler = {
            "getme": self._get_me,
            "deletewebhook": self._true,
            "close": self._true,
            "logout": self._true,
            "getupdates": self._get_updates,
            "copymessage": self._copy_message,
            "sendmessage": self._send_message,
        }.get(method)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        return await handler(params)

    async def _true(self, params: dict[str, str]) -> web.Response:
        return self._answer(True)

    async def _get_me(self, params: dict[str, str]) -> web.Response:
        return self._answer(
            {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "TP Gateway",
             "username": "tp_gateway_test_bot", "can_join_groups": True,
             "can_read_all_group_messages": True, "supports_inline_queries": False}
        )

    async def _get_updates(self, params: dict[str, str]) -> web.Response:
        offset = int(params["offset"]) if params.get("offset") else None
        self.offsets_seen.append(offset)
        if offset is not None and offset > 0:
            self.confirmed_offset = max(self.confirmed_offset, offset)
            self._pending = [(uid, body) for uid, body in self._pending if uid >= offset]
        limit = min(100, int(params.get("limit") or 100))
        timeout = float(params.get("timeout") or 0)
        if not self._pending and timeout > 0:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._pending) or self._closing), timeout
                    )
                except TimeoutError:
                    pass
        batch = self._pending[:limit]
        for update_id, _ in batch:
            self.deliveries[update_id] += 1
        return self._answer([body for _, body in batch])

    async def _copy_message(self, params: dict[str, str]) -> web.Response:
        if self.retry_after_once is not None:
            seconds, self.retry_after_once = self.retry_after_once, None
            return self._error(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)
        await self._copies_open.wait()
        if self._closing:
            return self._error(502, "Bad Gateway")
        self.copies.append(
            {"chat_id": params["chat_id"], "from_chat_id": params["from_chat_id"],
             "message_id": params["message_id"]}
        )
        return self._answer({"message_id": 90000 + len(self.copies)})

    async def _send_message(self, params: dict[str, str]) -> web.Response:
        self.sent.append(params)
        chat_id = int(params["chat_id"])
        return self._answer(
            {"message_id": 80000 + len(self.sent), "date": 1761334239,
             "chat": self.chat(chat_id, "Destino"), "text": params.get("text", "")}
        )
