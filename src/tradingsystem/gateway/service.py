"""The gateway process: settings, journal, publisher, monitored channels, Telegram sources, health and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx
import structlog
from fastapi import FastAPI
from pydantic import ValidationError

from tradingsystem.core.logging import add_secrets, fingerprint
from tradingsystem.core.timeutil import iso_ms
from tradingsystem.gateway.cursors import Cursors
from tradingsystem.gateway.failure_queue import FailureQueue
from tradingsystem.gateway.files import private_dir
from tradingsystem.gateway.journal import Journal, JournalError
from tradingsystem.gateway.metrics import GatewayMetrics
from tradingsystem.gateway.publisher import IngestClient, Publisher, RetrySchedule
from tradingsystem.gateway.settings import GatewaySettings
from tradingsystem.gateway.types import CursorReader, IngestPayload, Monitored, Source, normalize_channel_id

log = structlog.get_logger(__name__)

SERVICE_NAME = "telegram-gateway"
REGISTRY_REFRESH_S = 60.0
SOURCE_RESTART_DELAY_S = 5.0
STATE_POLL_S = 0.5


class ChannelRegistry:
    """`Monitored`: `TELEGRAM_SOURCE_CHANNEL_IDS` united with the API's active registry.

    The registry is fetched every minute; when the API is down the last good list is kept."""

    def __init__(self, env_ids: frozenset[str], client: IngestClient, refresh_s: float = REGISTRY_REFRESH_S) -> None:
        self.env_ids = env_ids
        self.client = client
        self.refresh_s = refresh_s
        self._registry: frozenset[str] = frozenset()
        self.last_refresh_ok: bool | None = None

    def channel_ids(self) -> frozenset[str]:
        return self.env_ids | self._registry

    def registry_ids(self) -> frozenset[str]:
        return self._registry

    def is_monitored(self, channel_id: str) -> bool:
        ids = self.channel_ids()
        return not ids or normalize_channel_id(channel_id) in ids

    async def refresh(self) -> bool:
        try:
            fetched = await self.client.fetch_channels()
        except (httpx.HTTPError, ValueError) as exc:
            if self.last_refresh_ok is not False:
                log.warning("Channel registry unavailable, keeping the last list", url=self.client.urls.channels,
                            error=str(exc) or type(exc).__name__, channels=len(self._registry))
            self.last_refresh_ok = False
            return False
        registry = frozenset(normalize_channel_id(c) for c in fetched)
        if registry != self._registry:
            log.info("Monitored channels updated", registry=sorted(registry), configured=sorted(self.env_ids))
        self._registry = registry
        self.last_refresh_ok = True
        return True

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s)


def load_sources(settings: GatewaySettings, monitored: Monitored, cursors: CursorReader) -> list[Source]:
    """The Telegram sources the settings configure (user account, bot, replay), each optional."""
    from tradingsystem.gateway.sources import build_sources

    return list(build_sources(settings, monitored, cursors))


SourceFactory = Callable[[GatewaySettings, Monitored, CursorReader], list[Source]]


class GatewayService:
    """Everything the gateway process runs; `start`/`stop` bracket the HTTP server's lifetime."""

    def __init__(self, settings: GatewaySettings, source_factory: SourceFactory = load_sources) -> None:
        if not settings.tokens:
            raise ValueError("GATEWAY_SECRET_TOKEN is required")
        self.settings = settings
        data_dir = settings.gateway_data_dir
        self.metrics = GatewayMetrics(settings.max_retries, settings.source_channel_ids)
        self.journal = Journal(data_dir / "journal.db")
        self.queue = FailureQueue(settings.queue_path, settings.failure_queue_max_bytes,
                                  settings.failure_queue_warn_bytes,
                                  on_corrupt=self.metrics.failure_queue_corrupt_lines.inc)
        self.journal.on_write_error = self._journal_write_error
        self.cursors = Cursors(data_dir / "cursors.json")
        self.client = IngestClient(settings.api_endpoint, settings.tokens[0], settings.api_timeout_ms,
                                   metrics=self.metrics)
        self.schedule = RetrySchedule(settings.max_retries, settings.base_retry_delay_ms)
        self.publisher = Publisher(self.journal, self.queue, self.cursors, self.metrics, self.client, self.schedule)
        self.registry = ChannelRegistry(settings.source_channel_ids, self.client)
        self.source_factory = source_factory
        self.sources: list[Source] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        self._telegram_state = "not_configured"

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = time.monotonic()
        if not self.journal.is_open:
            await asyncio.to_thread(self.journal.open)
        if self.journal.recovered is not None:
            self.metrics.journal_corrupt.inc()
        await asyncio.to_thread(self.queue.repair_tail)
        await self.publisher.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.registry.run(), name="channel-registry"))
        self.sources = self.source_factory(self.settings, self.registry, self.cursors)
        for source in self.sources:
            if hasattr(source, "on_flood_wait"):
                # Telegram asked us to slow down: count the seconds waited, so that alerts can see it.
                source.on_flood_wait = self.metrics.flood_wait_seconds.inc
            self._tasks.append(loop.create_task(self._run_source(source), name=f"source-{source.name}"))
        self._tasks.append(loop.create_task(self._watch_state(), name="telegram-state"))
        log.info(
            "Telegram gateway started",
            sources=[s.name for s in self.sources] or None,
            endpoint=self.client.urls.ingest,
            token=fingerprint(self.settings.tokens[0]),
            data_dir=str(self.settings.gateway_data_dir),
            pending=await asyncio.to_thread(self.journal.pending_count),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.publisher.stop()
        await self.client.aclose()
        await asyncio.to_thread(self.journal.close)

    async def _run_source(self, source: Source) -> None:
        while True:
            try:
                await source.run(self.sink)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Telegram source stopped unexpectedly, restarting", source=source.name,
                              delay_s=SOURCE_RESTART_DELAY_S)
                await asyncio.sleep(SOURCE_RESTART_DELAY_S)

    async def sink(self, payload: IngestPayload) -> None:
        """`MessageSink`: returns once the message is durable; raises (JournalError) when it is not,
        so the source does not acknowledge it to Telegram."""
        channel = str(payload["channelId"])
        payload["channelId"] = channel
        await self.journal.append(payload)
        self.metrics.messages_received.labels(channel_id=channel).inc()
        self.publisher.notify(channel)

    def _journal_write_error(self, reason: str | None) -> None:
        if reason is not None:
            self.metrics.journal_write_errors.labels(reason=reason).inc()
        self.metrics.journal_disk_full.set(1 if reason == "disk_full" else 0)

    # -- state and health ------------------------------------------------------------------------------

    def source_states(self) -> dict[str, str]:
        states: dict[str, str] = {"user": "not_configured", "bot": "not_configured"}
        for source in self.sources:
            states[source.name] = str(source.state)
        return states

    def telegram_state(self) -> str:
        states = [str(s.state) for s in self.sources]
        configured = [s for s in states if s != "not_configured"]
        if "connected" in configured:
            return "connected"
        if "replay" in configured:
            return "replay"
        if "login_required" in configured:
            return "login_required"
        if configured:
            return "disconnected"
        return "not_configured"

    async def _watch_state(self) -> None:
        while True:
            state = self.telegram_state()
            self.metrics.connection_status.set(1 if state in ("connected", "replay") else 0)
            if state != self._telegram_state:
                log.info("Telegram state changed", telegram=state, previous=self._telegram_state,
                         sources=self.source_states())
                self._telegram_state = state
            await asyncio.sleep(STATE_POLL_S)

    async def health(self) -> tuple[int, dict[str, Any]]:
        telegram = self.telegram_state()
        self.metrics.connection_status.set(1 if telegram in ("connected", "replay") else 0)
        pending = await self.publisher.refresh_gauges()
        queue = await asyncio.to_thread(self.queue.status)
        counts = await asyncio.to_thread(self.journal.counts)
        corrupt = await asyncio.to_thread(self.queue.corrupt_lines)
        damaged = await asyncio.to_thread(self.journal.corrupt_files)
        age = self.publisher.oldest_pending_age_s
        errors: list[str] = []
        warnings: list[str] = []
        if telegram == "not_configured":
            errors.append("No Telegram source configured (set TELEGRAM_API_ID/TELEGRAM_API_HASH or "
                          "TELEGRAM_INGESTION_BOT_TOKEN)")
        elif telegram == "login_required":
            errors.append("Telegram login required: run `tradingsystem gateway login`")
        elif telegram == "disconnected":
            errors.append("Telegram disconnected")
        if self.journal.last_write_error:
            errors.append(f"Journal write failed: {self.journal.last_write_error}")
        max_pending, max_age = self.settings.gateway_health_max_pending, self.settings.gateway_health_max_pending_age_s
        if pending > max_pending:
            warnings.append(f"{pending} journal entries pending (threshold {max_pending}): the API is not keeping up")
        if age > max_age:
            warnings.append(f"The oldest pending journal entry is {age:.0f} s old (threshold {max_age:g} s)")
        if queue.bytes > self.queue.warn_bytes:
            warnings.append(f"Failure queue over {self.queue.warn_bytes} bytes")
        if damaged:
            recovered = self.journal.recovered
            salvaged = f" ({recovered.salvaged} unfinished entries journaled again)" if recovered else ""
            warnings.append(f"Damaged journal set aside as {', '.join(f.name for f in damaged)}{salvaged}; "
                            "inspect, then remove the files")
        if corrupt:
            warnings.append(f"Failure queue: {corrupt} unreadable lines set aside in "
                            f"{self.queue.path.name}.corrupt-* (inspect, then remove the files)")
        if counts.get("held", 0):
            warnings.append(f"Failure queue full: {counts['held']} messages waiting in the journal")
        if self.publisher.api_reachable is False:
            warnings.append("API unreachable")
        status = "unhealthy" if errors else ("degraded" if warnings else "healthy")
        body: dict[str, Any] = {
            "status": status,
            "telegram": telegram,
            "sources": self.source_states(),
            "journalPending": pending,
            "journalOldestPendingAgeS": round(age, 3),
            "failureQueue": {"lines": queue.lines, "bytes": queue.bytes,
                             **({"corruptLines": corrupt} if corrupt else {})},
            "uptime": round(time.monotonic() - self._started, 3),
            "timestamp": iso_ms(),
        }
        if errors:
            body["error"] = "; ".join(errors)
        if warnings:
            body["warnings"] = warnings
        return (503 if errors else 200), body


# -- process assembly ----------------------------------------------------------------------------------


def create_gateway_app(service: GatewayService) -> FastAPI:
    """The thin HTTP layer: the shared app factory with the gateway's health check and metrics."""
    from tradingsystem.core.http import create_app
    from tradingsystem.core.settings import HttpSettings

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    from tradingsystem.gateway.control import ControlGuard, control_router, parse_networks

    guard = ControlGuard(service.settings.tokens, parse_networks(service.settings.gateway_control_allowed_cidrs))
    app = create_app(
        service=SERVICE_NAME,
        # The API calls the control surface once per dashboard request, which the API itself rate-limits.
        rate_limit_exempt=guard.exempt,
        title="Telegram Gateway",
        port=service.settings.gateway_port,
        http=HttpSettings(),
        registry=service.metrics.registry,
        health=service.health,
        lifespan=lifespan,
        description="Receives Telegram channel messages and delivers them to the TP Capital API.",
    )
    app.include_router(control_router(service, guard))
    return app


def _prepare_data_dir(path: Path) -> None:
    # the journal and the queue hold message texts from private channels: the directory is ours alone
    private_dir(path)


def _fatal(message: str) -> NoReturn:
    log.error(f"FATAL: {message}")
    sys.exit(1)


def build(settings: GatewaySettings | None = None) -> tuple[GatewaySettings, FastAPI]:
    """Validate the settings and build the app (exits 1 with a `FATAL:` log line on a bad configuration)."""
    try:
        settings = settings or GatewaySettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        _fatal(f"invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    if not settings.tokens:
        _fatal("GATEWAY_SECRET_TOKEN is required")
    add_secrets(*settings.tokens, settings.telegram_ingestion_bot_token, settings.telegram_api_hash)
    data_dir = settings.gateway_data_dir
    try:
        _prepare_data_dir(data_dir)
        with tempfile.TemporaryFile(dir=data_dir):
            pass  # the journal, queue and cursors are all written here: find out now, in one clear line
    except OSError as exc:
        _fatal(f"GATEWAY_DATA_DIR {data_dir} is not usable: {exc.strerror or exc}")
    service = GatewayService(settings)
    try:
        service.journal.open()  # before serving: a damaged journal is set aside and salvaged here
    except (sqlite3.Error, OSError, JournalError) as exc:
        _fatal(f"GATEWAY_DATA_DIR {data_dir}: the journal {service.journal.path} cannot be opened: {exc}")
    return settings, create_gateway_app(service)


def _configure_logging(level: str) -> None:
    from tradingsystem.core.logging import configure_logging

    configure_logging(SERVICE_NAME, level)
    # one INFO line per POST would drown the log; failures are logged by the publisher with context
    logging.getLogger("httpx").setLevel(logging.WARNING)


def app_factory() -> FastAPI:
    """For `serve gateway --reload` (uvicorn factory)."""
    settings = GatewaySettings()
    _configure_logging(settings.log_level)
    return build(settings)[1]


def run(settings: GatewaySettings | None = None, reload: bool = False) -> None:
    """Run the gateway in the foreground until SIGTERM/SIGINT (`tradingsystem serve gateway`)."""
    from tradingsystem.core.server import serve

    _configure_logging(settings.log_level if settings else os.environ.get("LOG_LEVEL", "INFO"))
    settings, app = build(settings)
    if reload:
        serve(None, settings.gateway_host, settings.gateway_port,
              reload_target="tradingsystem.gateway.service:app_factory")
        return
    serve(app, settings.gateway_host, settings.gateway_port)


if __name__ == "__main__":
    run()
