"""A real HTTP stand-in for the TP Capital ingest endpoints on loopback, whose behaviour a test can switch."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.servers import ThreadServer
from tradingsystem.core.embedded import free_port

Key = tuple[str, int, str, str | None]


class IngestStandIn:
    """`POST /ingest`, `POST /ingest/batch`, `GET /gateway/channels` with switchable behaviour.

    - `mode`: "ok" (200 stored / 200 duplicate by (channelId, messageId, kind, editDate)) or
      "unavailable" (503 for everything).
    - `reject`: message ids answered with 400 Validation failed.
    - `fail_ids`: message ids answered with 503 while listed (a channel's head stuck on retries).
    - `fail_next`: the next N ingest requests get 503.
    - `delay_s`: every ingest request waits this long before answering (a slow API).
    - `stop()` / `start()`: down entirely (connection refused) and back on the same port.
    """

    def __init__(self, token: str = "test-gateway-token", port: int | None = None) -> None:
        self.token = token
        self.mode = "ok"
        self.reject: set[int] = set()
        self.fail_ids: set[int] = set()
        self.fail_next = 0
        self.delay_s = 0.0
        self.channels: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.stored: dict[Key, dict[str, Any]] = {}
        self.arrivals: list[Key] = []  # first storage of each key, in order
        self.requests: Counter[int] = Counter()  # ingest requests per messageId (retries show here)
        self.duplicates = 0
        self.batch_requests = 0
        self.unauthorized = 0
        self._app = Starlette(routes=[
            Route("/ingest", self._ingest, methods=["POST"]),
            Route("/ingest/batch", self._batch, methods=["POST"]),
            Route("/gateway/channels", self._channels, methods=["GET"]),
        ])
        self._port = port or free_port()
        self._server: ThreadServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ingest_url(self) -> str:
        return f"{self.base_url}/ingest"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> IngestStandIn:
        """Listen (again) on the same port."""
        self._server = ThreadServer(self._app, self._port).start()
        return self

    def stop(self) -> None:
        """Down entirely: the port refuses connections until `start`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> IngestStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ----------------------------------------------------------------------------------

    def distinct(self) -> int:
        with self._lock:
            return len(self.stored)

    def stored_ids(self, channel_id: str | None = None) -> list[int]:
        """Message ids in the order they were first stored (optionally of one channel)."""
        with self._lock:
            return [k[1] for k in self.arrivals if channel_id is None or k[0] == channel_id]

    def attempts(self, message_id: int) -> int:
        with self._lock:
            return self.requests[message_id]

    # -- handlers ------------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        if request.headers.get("x-gateway-token") == self.token:
            return True
        with self._lock:
            self.unauthorized += 1
        return False

    @staticmethod
    def _validate(payload: Any) -> list[str]:
        if not isinstance(payload, dict):
            return ["body must be an object"]
        details = []
        channel = payload.get("channelId")
        if not isinstance(channel, str) or not channel.lstrip("-").isdigit():
            details.append("channelId is required")
        message_id = payload.get("messageId")
        if not isinstance(message_id, int) or message_id <= 0:
            details.append("messageId must be a positive integer")
        if not isinstance(payload.get("timestamp"), str):
            details.append("timestamp must be valid ISO 8601 datetime")
        if payload.get("kind", "new") == "edit" and not payload.get("editDate"):
            details.append("editDate is required for kind edit")
        return details

    def _store(self, payload: dict[str, Any]) -> dict[str, Any]:
        key: Key = (payload["channelId"], payload["messageId"], payload.get("kind") or "new",
                    payload.get("editDate"))
        with self._lock:
            if key in self.stored:
                self.duplicates += 1
                return {"success": True, "messageId": payload["messageId"], "stored": False, "reason": "duplicate"}
            self.stored[key] = payload
            self.arrivals.append(key)
        return {"success": True, "messageId": payload["messageId"], "stored": True, "kind": "noise",
                "signalId": None}

    async def _ingest(self, request: Request) -> JSONResponse:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self._authorized(request):
            return JSONResponse({"error": "Invalid or missing authentication token"}, status_code=401)
        payload = await request.json()
        message_id = payload.get("messageId") if isinstance(payload, dict) else None
        with self._lock:
            if isinstance(message_id, int):
                self.requests[message_id] += 1
            failing = self.mode == "unavailable" or self.fail_next > 0 or message_id in self.fail_ids
            if self.fail_next > 0:
                self.fail_next -= 1
        if failing:
            return JSONResponse({"error": "Database unavailable"}, status_code=503)
        details = self._validate(payload)
        if message_id in self.reject:
            details.append("text is not acceptable")
        if details:
            return JSONResponse({"error": "Validation failed", "details": details}, status_code=400)
        return JSONResponse(self._store(payload))

    async def _batch(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"error": "Invalid or missing authentication token"}, status_code=401)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        body = await request.json()
        messages = body.get("messages") if isinstance(body, dict) else None
        ids = [p.get("messageId") for p in messages or [] if isinstance(p, dict)]
        with self._lock:
            self.batch_requests += 1
            for message_id in ids:
                if isinstance(message_id, int):
                    self.requests[message_id] += 1
            # Like the real API with its database away: the whole batch fails, nothing is stored.
            unavailable = (self.mode == "unavailable" or self.fail_next > 0
                           or any(i in self.fail_ids for i in ids))
            if self.fail_next > 0:
                self.fail_next -= 1
        if unavailable:
            return JSONResponse({"error": "Database unavailable"}, status_code=503)
        if not isinstance(messages, list) or len(messages) > 1000:
            return JSONResponse({"error": "Validation failed", "details": ["messages must be a list of at most 1000"]},
                                status_code=400)
        results = []
        for payload in messages:
            details = self._validate(payload)
            if isinstance(payload, dict) and payload.get("messageId") in self.reject:
                details.append("text is not acceptable")
            if details:
                results.append({"messageId": payload.get("messageId") if isinstance(payload, dict) else None,
                                "stored": False, "error": "Validation failed", "details": details})
            else:
                result = self._store(payload)
                result.pop("success", None)
                results.append(result)
        return JSONResponse({"success": True, "results": results})

    async def _channels(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"error": "Invalid or missing authentication token"}, status_code=401)
        if self.mode == "unavailable":
            return JSONResponse({"error": "Database unavailable"}, status_code=503)
        return JSONResponse({"data": self.channels})
