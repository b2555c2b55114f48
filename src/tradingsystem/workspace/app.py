"""Builds and serves the Workspace API process (port 3200)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradingsystem.core.db import Database, DatabaseStartupFailed
from tradingsystem.core.http import create_app, uptime_s, utc_now_iso
from tradingsystem.core.logging import configure_logging
from tradingsystem.core.migrations import migrate
from tradingsystem.core.server import serve
from tradingsystem.core.settings import ConfigError, DatabaseSettings, HttpSettings, fatal
from tradingsystem.workspace.metrics import WorkspaceMetrics
from tradingsystem.workspace.routes import router
from tradingsystem.workspace.service import WorkspaceService

log = structlog.get_logger(__name__)


class WorkspaceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    workspace_port: int = Field(3200, validation_alias="WORKSPACE_PORT")


def build_app(dsn: str | None = None) -> FastAPI:
    """The Workspace app; `dsn` overrides the database settings (the launcher and tests pass one)."""
    http = HttpSettings()
    port = WorkspaceSettings().workspace_port
    configure_logging("workspace", http.log_level)
    if dsn is None:
        try:
            dsn = DatabaseSettings().dsn()
        except ConfigError as exc:
            fatal(str(exc))
    assert dsn is not None
    metrics = WorkspaceMetrics()
    db_settings = DatabaseSettings()
    db = Database(dsn, min_size=db_settings.db_pool_min, max_size=db_settings.db_pool_max,
                  status_gauge=metrics.db_status)
    service = WorkspaceService(db, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await db.connect()
        except DatabaseStartupFailed:
            log.critical("Database connection failed after retries")
            raise
        await db.run(lambda c: migrate(c, ["workspace"]))
        await service.refresh_item_count()
        log.info("Workspace API started", port=port)
        yield
        await db.close()
        log.info("Workspace API stopped")

    async def health() -> tuple[int, dict[str, Any]]:
        up = await db.ping()
        body: dict[str, Any] = {
            "status": "healthy" if up else "unhealthy",
            "service": "workspace",
            "database": "connected" if up else "disconnected",
            "uptime": uptime_s(app),
            "timestamp": utc_now_iso(),
        }
        if not up:
            body["error"] = "Database unavailable"
        return (200 if up else 503), body

    app = create_app(
        service="workspace",
        title="Workspace API",
        description="A backlog of ideas, tasks and bugs. Routes live under /api and also without the prefix.",
        port=port,
        http=http,
        registry=metrics.registry,
        health=health,
        lifespan=lifespan,
        envelope=True,
    )
    app.state.workspace = service
    app.include_router(router, prefix="/api")
    app.include_router(router, include_in_schema=False)
    return app


def run(reload: bool = False) -> None:
    """`tradingsystem serve workspace`: one Workspace process in the foreground."""
    http = HttpSettings()
    port = WorkspaceSettings().workspace_port
    if reload:
        configure_logging("workspace", http.log_level)
        serve(None, http.host, port, reload_target="tradingsystem.workspace.app:build_app")
    else:
        serve(build_app(), http.host, port)
