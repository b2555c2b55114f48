"""The start, health and stop of a database-backed service: connect patiently, migrate, report honestly."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI

from tradingsystem.core.db import Database, DatabaseStartupFailed
from tradingsystem.core.migrations import migrate
from tradingsystem.core.timeutil import iso_ms

log = structlog.get_logger(__name__)


class DatabaseService:
    """Lifespan and `/health` of a service whose job needs its PostgreSQL schema."""

    def __init__(self, db: Database, *, name: str, title: str, schema: str,
                 on_ready: Callable[[], Awaitable[None]] | None = None,
                 on_stop: Callable[[], Awaitable[None]] | None = None, **started_fields: Any) -> None:
        self.db = db
        self.name = name
        self.title = title
        self.schema = schema
        self.on_ready = on_ready
        self.on_stop = on_stop
        self.started_fields = started_fields
        self.started_at = time.monotonic()

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        try:
            await self.db.connect()
        except DatabaseStartupFailed:
            log.critical("Database connection failed after retries")
            raise
        await self.db.run(lambda c: migrate(c, [self.schema]))
        if self.on_ready is not None:
            await self.on_ready()
        # What startup built (modules, the app, its routes and models) lives as long as the process. Frozen, it
        # is left out of the collector's scans: a full collection walked its 84,000 objects in 65-80 ms, while
        # requests waited (decision 18; bench/README.md, "The tail of a single ingest").
        gc.collect()
        gc.freeze()
        log.info(f"{self.title} started", **self.started_fields)
        yield
        if self.on_stop is not None:
            await self.on_stop()
        await self.db.close()
        log.info(f"{self.title} stopped")

    async def health(self) -> tuple[int, dict[str, Any]]:
        up = await self.db.ping()
        body: dict[str, Any] = {
            "status": "healthy" if up else "unhealthy",
            "service": self.name,
            "database": "connected" if up else "disconnected",
            "uptime": round(time.monotonic() - self.started_at, 3),
            "timestamp": iso_ms(),
        }
        if not up:
            body["error"] = "Database unavailable"
        return (200 if up else 503), body
