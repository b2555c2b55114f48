"""Real HTTP servers for tests: a service app under uvicorn in a thread, or a service as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tradingsystem.core.embedded import free_port


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05,
               message: str = "condition") -> None:
    """Poll `predicate` until it holds; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")


class ThreadServer:
    """Runs an ASGI app under uvicorn on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                     lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(self.config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # surfaced by start()
            self.error = exc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ThreadServer:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout, message="server start")
        if not self.server.started:
            raise RuntimeError(f"server failed to start: {self.error!r}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class ProcessServer:
    """Runs `tradingsystem serve <name>` (or any argv) as a real subprocess with its own environment."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log_path: Path,
                 cwd: Path | None = None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = {**os.environ, **env}
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProcessServer:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        return self

    def wait_healthy(self, timeout: float = 60, path: str = "/health/live") -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(self.url + path, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, message=f"{self.argv} to answer {path}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 40) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if hasattr(self, "_log"):
            self._log.close()


def tradingsystem_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tradingsystem.cli", *args]
