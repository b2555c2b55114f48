"""Runs one service under uvicorn in the foreground, with graceful shutdown and optional auto-reload."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import structlog
import uvicorn
from fastapi import FastAPI

log = structlog.get_logger(__name__)

GRACEFUL_TIMEOUT_S = 25


class _Server(uvicorn.Server):
    """uvicorn re-raises the stop signal after a graceful shutdown; the contract wants exit 0 instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


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
    server = _Server(config)
    try:
        server.run()
    except SystemExit:
        # uvicorn exits with its own code when the lifespan startup fails; the contract says 1.
        server.started = False
    if not server.started:
        log.error("Service failed to start", port=port)
        sys.exit(1)
    log.info("Graceful shutdown completed")
    sys.exit(0)
