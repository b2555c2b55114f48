"""Runs one service under uvicorn in the foreground, with graceful shutdown and optional auto-reload."""

from __future__ import annotations

import sys
from pathlib import Path

import structlog
import uvicorn
from fastapi import FastAPI

log = structlog.get_logger(__name__)

GRACEFUL_TIMEOUT_S = 25


def serve(app: FastAPI | None, host: str, port: int, reload_target: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT, finish in-flight requests, then exit 0 (1 if startup failed).

    With `reload_target` ("module:factory") the service restarts on source changes, which is what the
    compose dev profile runs against a mounted source tree.
    """
    if reload_target is not None:
        src = Path(__file__).resolve().parents[2]
        uvicorn.run(
            reload_target, factory=True, host=host, port=port, reload=True, reload_dirs=[str(src)],
            reload_delay=0.25, log_config=None, timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        )
        log.info("Graceful shutdown completed")
        return
    assert app is not None
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        log.error("Service failed to start", port=port)
        sys.exit(1)
    log.info("Graceful shutdown completed")
    sys.exit(0)
