"""The one HTTP app factory every service uses: edge protections, error shapes, health and metrics."""

from __future__ import annotations

import inspect
import math
import time
import typing
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradingsystem.core import openapi
from tradingsystem.core.db import DatabaseUnavailable
from tradingsystem.core.errors import ServiceError
from tradingsystem.core.settings import HttpSettings
from tradingsystem.core.validation import format_validation_errors

log = structlog.get_logger(__name__)

DEFAULT_BODY_LIMIT = 1024 * 1024
HealthCheck = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]
RequestObserver = Callable[[str, str, int, float], None]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Restrictive for our own HTML; the interactive docs need their assets from the CDN FastAPI uses.
HTML_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
UNLIMITED_PATHS = ("/health", "/metrics")


class FastJSON(JSONResponse):
    """JSON rendered by orjson: the services answer many small objects, so serialisation speed matters.
    A JSONResponse, so that the OpenAPI document takes each route's documented model as its body."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class LeanRoute(APIRoute):
    """An APIRoute that calls its endpoint directly when the endpoint takes nothing but the request, string
    path parameters and optional string headers, and is declared to return a Response itself.

    For such an endpoint FastAPI's per-request dependency resolution has nothing to check (a path parameter is
    always a string, an absent optional header is None), yet it was a sixth of a Workspace GET's CPU
    (bench/README.md, "Where the CPU goes"; the stack ceiling puts FastAPI at about 0.1 ms per request over
    plain Starlette). Matching, the exception handlers and the OpenAPI document stay FastAPI's; any other
    endpoint (query or body parameters, typed or constrained parameters, dependencies) goes through FastAPI's
    handler unchanged.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        endpoint = dependant.call
        plain = (
            endpoint is not None and inspect.iscoroutinefunction(endpoint)
            and not (dependant.query_params or dependant.cookie_params or dependant.body_params
                     or dependant.dependencies or self.dependencies)
            and dependant.response_param_name is None and dependant.background_tasks_param_name is None
            and dependant.security_scopes_param_name is None and dependant.http_connection_param_name is None
            and all(f.field_info.annotation is str and not f.field_info.metadata for f in dependant.path_params)
            and all(f.field_info.annotation == (str | None) and f.field_info.default is None
                    and not f.field_info.metadata for f in dependant.header_params)
            and _returns_response(endpoint)
        )
        if not plain or endpoint is None:
            return super().get_route_handler()
        request_name = dependant.request_param_name
        paths = [(f.name, f.alias) for f in dependant.path_params]
        # FastAPI has already turned a header parameter's underscores into the hyphens of its alias.
        headers = [(f.name, f.alias) for f in dependant.header_params]
        call = endpoint

        async def handler(request: Request) -> Response:
            kwargs: dict[str, Any] = {name: request.path_params[alias] for name, alias in paths}
            if headers:
                received = request.headers
                for name, alias in headers:
                    kwargs[name] = received.get(alias)
            if request_name is not None:
                kwargs[request_name] = request
            answer: Response = await call(**kwargs)
            return answer

        return handler


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    try:
        declared = typing.get_type_hints(endpoint).get("return")
    except (NameError, TypeError):
        return False
    return isinstance(declared, type) and issubclass(declared, Response)


class ErrorShape:
    """How a service spells its error bodies (the Workspace wraps them in its envelope)."""

    def __init__(self, envelope: bool) -> None:
        self.envelope = envelope

    def body(self, error: str, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {"success": False} if self.envelope else {}
        payload["error"] = error
        payload.update(extra)
        return payload

    def response(self, status: int, error: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
        return FastJSON(self.body(error, **extra), status_code=status, headers=headers)


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> None:
    raw = orjson.dumps(body)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                    *headers],
    })
    await send({"type": "http.response.body", "body": raw})


class _BodyTooLarge(Exception):
    pass


class EdgeMiddleware:
    """Correlation id, security headers, per-IP rate limit, body size limit, request metrics, last-resort 500."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: HttpSettings,
        errors: ErrorShape,
        body_limits: dict[str, int],
        rate_limit_exempt: Callable[[Scope], bool] | None,
        observer: RequestObserver | None,
    ) -> None:
        self.app = app
        self.errors = errors
        self.body_limits = body_limits
        self.exempt = rate_limit_exempt
        self.observer = observer
        seconds = max(1, math.ceil(settings.rate_limit_window_ms / 1000))
        self.limit = RateLimitItemPerSecond(settings.rate_limit_max, seconds)
        # The asyncio storage expires windows with a task on the event loop; the threaded one starts a
        # timer thread every few milliseconds under load.
        self.limiter = FixedWindowRateLimiter(MemoryStorage())

    async def _rate_limited(self, scope: Scope) -> int | None:
        path: str = scope["path"]
        if path.startswith(UNLIMITED_PATHS) or (self.exempt is not None and self.exempt(scope)):
            return None
        client = scope.get("client")
        key = client[0] if client else "unknown"
        if await self.limiter.hit(self.limit, key):
            return None
        reset, _ = await self.limiter.get_window_stats(self.limit, key)
        return max(1, math.ceil(reset - time.time()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        correlation_id = ""
        content_length: int | None = None
        for name, value in scope["headers"]:
            if name == b"x-correlation-id" and 0 < len(value) <= 128:
                correlation_id = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = None
        if not correlation_id:
            correlation_id = str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        extra_headers = [(b"x-correlation-id", correlation_id.encode("latin-1")), *SECURITY_HEADERS]
        status_holder = [500]
        started_response = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_response[0] = True
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.extend(extra_headers)
                if any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers.append((b"content-security-policy", HTML_CSP))
                message["headers"] = headers
            await send(message)

        try:
            retry_after = await self._rate_limited(scope)
            if retry_after is not None:
                status_holder[0] = 429
                await _send_json(
                    send, 429, self.errors.body("Too Many Requests", retryAfter=retry_after),
                    [(b"retry-after", str(retry_after).encode()), *extra_headers],
                )
                return
            limit = self.body_limits.get(scope["path"], DEFAULT_BODY_LIMIT)
            if content_length is not None and content_length > limit:
                status_holder[0] = 413
                await _send_json(send, 413, self.errors.body("Payload Too Large", limit=limit), extra_headers)
                return
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _BodyTooLarge
                return message

            await self.app(scope, receive_limited, send_wrapper)
        except _BodyTooLarge:
            if not started_response[0]:
                status_holder[0] = 413
                await _send_json(send, 413, self.errors.body("Payload Too Large", limit=limit), extra_headers)
        except Exception:
            log.exception("Unhandled error", path=scope["path"], method=scope["method"])
            if not started_response[0]:
                status_holder[0] = 500
                await _send_json(
                    send, 500, self.errors.body("Internal Server Error", correlationId=correlation_id), extra_headers
                )
        finally:
            if self.observer is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.observer(scope["method"], template, status_holder[0], time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("correlation_id")


def create_app(
    *,
    service: str,
    title: str,
    port: int,
    http: HttpSettings,
    registry: CollectorRegistry,
    health: HealthCheck,
    lifespan: Lifespan | None = None,
    envelope: bool = False,
    body_limits: dict[str, int] | None = None,
    rate_limit_exempt: Callable[[Scope], bool] | None = None,
    observer: RequestObserver | None = None,
    description: str = "",
) -> FastAPI:
    """Build a FastAPI app with the contract's conventions; the service adds its routers to it."""
    errors = ErrorShape(envelope)
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan,
                  default_response_class=FastJSON)
    app.state.errors = errors
    app.state.service = service
    openapi.install(app, envelope)
    app.state.started_at = time.monotonic()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and exc.detail in (None, "Not Found"):
            return errors.response(404, "Not Found")
        if exc.status_code == 405:
            return errors.response(405, "Method Not Allowed")
        if exc.status_code == 400:
            # FastAPI's own 400s (a body it cannot parse) answer like every other validation failure.
            log.info("Validation failed", path=request.url.path, details=[str(exc.detail)])
            return errors.response(400, "Validation failed", details=["body must be valid JSON"])
        detail = exc.detail if isinstance(exc.detail, str) else "Error"
        return errors.response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = format_validation_errors(exc.errors())
        log.info("Validation failed", path=request.url.path, details=details)
        return errors.response(400, "Validation failed", details=details)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        extra: dict[str, Any] = {"details": exc.details} if exc.details is not None else {}
        return errors.response(exc.status, exc.message, **extra)

    @app.exception_handler(asyncpg.DataError)
    async def _bad_data(request: Request, exc: asyncpg.DataError) -> Response:
        # SQLSTATE class 22: a value PostgreSQL cannot hold (a NUL character, an out-of-range number) is the
        # client's input, not our failure.
        log.info("Rejected a value the database cannot store", path=request.url.path, error=str(exc))
        return errors.response(400, "Validation failed",
                               details=["a value in the request cannot be stored (for example a NUL character)"])

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(request: Request, exc: DatabaseUnavailable) -> Response:
        return errors.response(503, "Database unavailable")

    @app.get("/health", include_in_schema=False)
    async def _health() -> Response:
        status, body = await health()
        return FastJSON(body, status_code=status)

    @app.get("/health/live", include_in_schema=False)
    async def _live() -> Response:
        return FastJSON({"status": "alive", "uptime": uptime_s(app)})

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=http.origins(port),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "X-API-Key", "X-Correlation-Id", "X-Gateway-Token", "Authorization"],
        expose_headers=["X-Correlation-Id", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(
        EdgeMiddleware,  # type: ignore[arg-type]
        settings=http,
        errors=errors,
        body_limits=body_limits or {},
        rate_limit_exempt=rate_limit_exempt,
        observer=observer,
    )
    return app


def uptime_s(app: FastAPI) -> float:
    return round(time.monotonic() - float(app.state.started_at), 3)
