"""The whole stack as an operator runs it: `tradingsystem up|down|…` as real processes, isolated per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tradingsystem.core.embedded import free_port

# Anything in the caller's environment that would point the stack elsewhere.
ISOLATED_PREFIXES = ("TELEGRAM_", "TIMESCALEDB_", "GATEWAY_", "REPLAY_", "FAILURE_QUEUE_")
ISOLATED_NAMES = {"DATABASE_URL", "API_SECRET_TOKEN", "API_ENDPOINT", "HOST", "TRADINGSYSTEM_VAR_DIR",
                  "WORKSPACE_PORT", "API_PORT", "EMBEDDED_PG_PORT", "EMBEDDED_PG_SYSTEM_USER"}


@dataclass
class Stack:
    """One isolated launcher: its own var directory, working directory and free ports."""

    root: Path
    env: dict[str, str]
    ports: dict[str, int]
    outputs: list[str] = field(default_factory=list)

    @property
    def var(self) -> Path:
        return Path(self.env["TRADINGSYSTEM_VAR_DIR"])

    def run(self, *args: str, timeout: float = 180, extra_env: dict[str, str] | None = None,
            path: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **(extra_env or {})}
        if path is not None:
            env["PATH"] = path
        result = subprocess.run([sys.executable, "-m", "tradingsystem.cli", *args], cwd=self.root, env=env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        self.outputs.append(f"$ tradingsystem {' '.join(args)} -> {result.returncode}\n{result.stdout}"
                            f"{result.stderr}")
        return result

    def up(self, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        result = self.run("up", **kwargs)
        assert result.returncode == 0, f"up failed:\n{result.stdout}\n{result.stderr}\n{self.log_tails()}"
        return result

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json")
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def programs(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.status()["programs"]}

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        config = self.var / "supervisor" / "supervisord.conf"
        return subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(config), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def get(self, name: str, path: str) -> httpx.Response:
        return httpx.get(self.url(name, path), timeout=5, trust_env=False)

    def log_tails(self) -> str:
        parts = []
        logs = self.var / "logs"
        if logs.exists():
            for log_file in sorted(logs.glob("*.log")):
                lines = log_file.read_text(errors="replace").splitlines()[-15:]
                parts.append(f"--- {log_file.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def isolated_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items()
            if key not in ISOLATED_NAMES and not key.startswith(ISOLATED_PREFIXES)}


@pytest.fixture
def stack() -> Iterator[Stack]:
    # Not under pytest's base temp: a concurrent pytest run resets that tree to 0700, and the embedded
    # PostgreSQL (run as `pgserver` under root) must keep traversing to its data directory.
    tmp_path = Path(tempfile.mkdtemp(prefix="ts-e2e-"))
    ports = {"workspace": free_port(), "api": free_port(), "gateway": free_port(), "postgres": free_port()}
    env = {
        **isolated_environment(),
        "TRADINGSYSTEM_VAR_DIR": str(tmp_path / "var"),
        "WORKSPACE_PORT": str(ports["workspace"]),
        "API_PORT": str(ports["api"]),
        "GATEWAY_PORT": str(ports["gateway"]),
        "EMBEDDED_PG_PORT": str(ports["postgres"]),
    }
    instance = Stack(tmp_path, env, ports)
    try:
        yield instance
    finally:
        try:
            result = instance.run("down", timeout=120)
            assert result.returncode == 0, f"down failed:\n{result.stdout}\n{result.stderr}"
        finally:
            shutil.rmtree(tmp_path, ignore_errors=True)
