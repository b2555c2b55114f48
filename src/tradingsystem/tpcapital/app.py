"""Builds and serves the TP Capital API process (port 4005)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI
from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import Scope

from tradingsystem.core.db import Database
from tradingsystem.core.http import create_app
from tradingsystem.core.lifecycle import DatabaseService
from tradingsystem.core.logging import configure_logging, fingerprint
from tradingsystem.core.server import serve
from tradingsystem.core.settings import ConfigError, DatabaseSettings, HttpSettings, fatal
from tradingsystem.tpcapital.compat_routes import router as compat_router
from tradingsystem.tpcapital.gateway_link import GatewayLink
from tradingsystem.tpcapital.metrics import TpCapitalMetrics
from tradingsystem.tpcapital.routes import router
from tradingsystem.tpcapital.service import TokenChecker, TpCapitalService
from tradingsystem.tpcapital.settings import LifecycleSettings

log = structlog.get_logger(__name__)
BATCH_BODY_LIMIT = 8 * 1024 * 1024


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    api_port: int = Field(4005, validation_alias="API_PORT")
    gateway_secret_token: str | None = Field(
        None, validation_alias=AliasChoices("GATEWAY_SECRET_TOKEN", "API_SECRET_TOKEN")
    )
    tp_capital_api_key: str | None = Field(None, validation_alias="TP_CAPITAL_API_KEY")
    # Where the gateway's control surface answers (history sync, bots, configured channels).
    gateway_url: str = Field("http://localhost:4006", validation_alias="GATEWAY_URL")
    # TimescaleDB only: compress raw-message chunks older than this many days; 0 keeps them uncompressed.
    messages_compress_after_days: int = Field(0, ge=0, validation_alias="MESSAGES_COMPRESS_AFTER_DAYS")


class PerformanceGauges:
    """Recomputes the channel performance gauges every `interval_s` while the service runs."""

    def __init__(self, service: TpCapitalService, interval_s: float) -> None:
        self.service = service
        self.interval_s = interval_s
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name="performance-gauges")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _loop(self) -> None:
        while True:
            try:
                await self.service.refresh_performance_metrics()
            except Exception as exc:  # the gauges keep their last values; the next round tries again
                log.warning("Could not refresh the channel performance gauges", error=str(exc))
            await asyncio.sleep(self.interval_s)


def build_app(dsn: str | None = None) -> FastAPI:
    """The TP Capital app; `dsn` overrides the database settings (the launcher and tests pass one)."""
    http = HttpSettings()
    configure_logging("tp-capital-api", http.log_level)
    try:
        settings = ApiSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        fatal(f"FATAL: invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    if not (settings.gateway_secret_token or "").strip(" ,"):
        fatal("FATAL: GATEWAY_SECRET_TOKEN is required")
    if dsn is None:
        try:
            dsn = DatabaseSettings().dsn()
        except ConfigError as exc:
            fatal(str(exc))
    assert dsn is not None and settings.gateway_secret_token is not None
    tokens = TokenChecker(settings.gateway_secret_token)
    metrics = TpCapitalMetrics()
    db_settings = DatabaseSettings()
    db = Database(dsn, min_size=db_settings.db_pool_min, max_size=db_settings.db_pool_max,
                  status_gauge=metrics.db_status)
    try:
        lifecycle_settings = LifecycleSettings()
    except ValidationError as exc:
        fatal(f"FATAL: invalid signal lifecycle setting: {exc.errors()[0]['msg']}")
    service = TpCapitalService(db, metrics, tokens, lifecycle_settings.rules())
    gauges = PerformanceGauges(service, lifecycle_settings.performance_metrics_interval_s)

    async def on_ready() -> None:
        await service.apply_message_compression(settings.messages_compress_after_days)
        await gauges.start()

    lifecycle = DatabaseService(
        db, name="tp-capital-api", title="TP Capital API", schema="tp_capital", port=settings.api_port,
        gateway_tokens=[fingerprint(t.decode()) for t in tokens.tokens],
        api_key="set" if settings.tp_capital_api_key else "unset (loopback-only mutations)",
        on_ready=on_ready, on_stop=gauges.stop,
    )

    gateway = GatewayLink(settings.gateway_url, [t.decode() for t in tokens.tokens])

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with lifecycle.lifespan(app):
            try:
                yield
            finally:
                await gateway.aclose()

    def exempt(scope: Scope) -> bool:
        # A gateway re-driving its queue must never be throttled; a caller with a wrong token is.
        if not scope["path"].startswith(("/ingest", "/gateway/")):
            return False
        for name, value in scope["headers"]:
            if name == b"x-gateway-token":
                return tokens.valid(value.decode("latin-1"))
        return False

    app = create_app(
        service="tp-capital-api",
        title="TP Capital API",
        description="Authenticated ingest of Telegram messages, exactly-once storage, parsed trade signals.",
        port=settings.api_port,
        http=http,
        registry=metrics.registry,
        health=lifecycle.health,
        lifespan=lifespan,
        body_limits={"/ingest/batch": BATCH_BODY_LIMIT},
        rate_limit_exempt=exempt,
        observer=metrics.observe_request,
    )
    app.state.tpcapital = service
    app.state.api_key = (settings.tp_capital_api_key or "").strip() or None
    app.state.gateway = gateway
    app.include_router(router)
    app.include_router(compat_router)
    return app


def run(reload: bool = False) -> None:
    """`tradingsystem serve api`: one TP Capital API process in the foreground."""
    http = HttpSettings()
    port = ApiSettings().api_port
    if reload:
        configure_logging("tp-capital-api", http.log_level)
        serve(None, http.host, port, reload_target="tradingsystem.tpcapital.app:build_app")
    else:
        serve(build_app(), http.host, port)
