"""Bare apps for the stack ceiling: read a JSON body, insert one row (one commit), answer JSON; nothing else.

`bench.bench_ceiling` serves each of them under uvicorn or granian. `raw` is a hand-written ASGI callable,
`starlette` a plain Starlette route, `fastapi` a FastAPI route taking the request (no dependencies, no
middleware), `fastapi_full` the same route behind the project's own `EdgeMiddleware` and CORS, so that the
difference between the rows shows what each layer costs on one core. `/noop` answers without the database.
The pool is opened on first use, so that the apps need no lifespan support from the server.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

INSERT = ("INSERT INTO bench_ceiling (channel_id, message_id, body) VALUES ($1, $2, $3) "
          "ON CONFLICT DO NOTHING RETURNING true")
_pool: asyncpg.Pool | None = None
_lock = asyncio.Lock()
HEADERS = [(b"content-type", b"application/json")]


async def pool() -> asyncpg.Pool:
    global _pool
    if _pool is None:
        async with _lock:
            if _pool is None:
                _pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2,
                                                  max_size=int(os.environ.get("CEILING_POOL", "10")))
    return _pool


async def insert(body: bytes) -> bytes:
    message = orjson.loads(body)
    async with (await pool()).acquire() as conn:
        stored = await conn.fetchval(INSERT, message["channelId"], message["messageId"], body.decode())
    return orjson.dumps({"success": True, "messageId": message["messageId"], "stored": bool(stored)})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def raw(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/insert":
        out = await insert(await _read_body(receive))
    else:
        await _read_body(receive)
        out = b'{"status":"ok"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [*HEADERS, (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


async def _s_insert(request: Request) -> Response:
    return Response(await insert(await request.body()), media_type="application/json")


async def _s_ok(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def _routes() -> list[Route]:
    return [Route("/insert", _s_insert, methods=["POST"]), Route("/noop", _s_ok, methods=["POST"]),
            Route("/health", _s_ok, methods=["GET"])]


starlette = Starlette(routes=_routes())


def _fastapi(full: bool) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/insert")
    async def f_insert(request: Request) -> Response:
        return Response(await insert(await request.body()), media_type="application/json")

    @app.post("/noop")
    async def f_noop(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/health")
    async def f_health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    if full:
        from starlette.middleware.cors import CORSMiddleware

        from tradingsystem.core.http import EdgeMiddleware, ErrorShape
        from tradingsystem.core.settings import HttpSettings

        app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3103"], allow_methods=["GET", "POST"])
        app.add_middleware(EdgeMiddleware, settings=HttpSettings(), errors=ErrorShape(False),  # type: ignore[arg-type]
                           body_limits={}, rate_limit_exempt=None, observer=None)
    return app


fastapi = _fastapi(False)
fastapi_full = _fastapi(True)
