"""Builds and serves the Workspace API process (port 3200)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradingsystem.core.db import Database
from tradingsystem.core.http import create_app
from tradingsystem.core.lifecycle import DatabaseService
from tradingsystem.core.logging import configure_logging
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

    lifecycle = DatabaseService(db, name="workspace", title="Workspace API", schema="workspace",
                                on_ready=service.refresh_item_count, port=port)

    app = create_app(
        service="workspace",
        title="Workspace API",
        description="A backlog of ideas, tasks and bugs. Routes live under /api and also without the prefix.",
        port=port,
        http=http,
        registry=metrics.registry,
        health=lifecycle.health,
        lifespan=lifecycle.lifespan,
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
