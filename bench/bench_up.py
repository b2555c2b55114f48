"""Benchmark of `tradingsystem up`: cold (new var directory) and warm start to all healthy, no-op `up`, `down`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, machine_info
from tradingsystem.core.embedded import free_port

RUNS = 3
TARGET_COLD_S = 10.0
ISOLATED_PREFIXES = ("TELEGRAM_", "TIMESCALEDB_", "GATEWAY_", "REPLAY_", "FAILURE_QUEUE_")
ISOLATED_NAMES = {"DATABASE_URL", "API_SECRET_TOKEN", "API_ENDPOINT", "HOST", "TRADINGSYSTEM_VAR_DIR"}


class Stack:
    """One isolated launcher (own var directory and free ports), as the e2e tests use it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ts-bench-up-"))
        self.api_port = free_port()
        self.env = {key: value for key, value in os.environ.items()
                    if key not in ISOLATED_NAMES and not key.startswith(ISOLATED_PREFIXES)}
        self.env.update({
            "TRADINGSYSTEM_VAR_DIR": str(self.root / "var"),
            "WORKSPACE_PORT": str(free_port()),
            "API_PORT": str(self.api_port),
            "GATEWAY_PORT": str(free_port()),
            "EMBEDDED_PG_PORT": str(free_port()),
        })

    def timed(self, *args: str) -> tuple[float, str]:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "tradingsystem.cli", *args], cwd=self.root, env=self.env,
                                capture_output=True, text=True, timeout=300, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"tradingsystem {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return elapsed, result.stdout

    def first_signal_s(self, since: float, timeout_s: float = 60) -> float | None:
        deadline = time.perf_counter() + timeout_s
        with httpx.Client(timeout=2, trust_env=False) as client:
            while time.perf_counter() < deadline:
                try:
                    if client.get(f"http://127.0.0.1:{self.api_port}/signals?limit=1").json()["data"]:
                        return time.perf_counter() - since
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                time.sleep(0.05)
        return None

    def remove(self) -> None:
        subprocess.run([sys.executable, "-m", "tradingsystem.cli", "down"], cwd=self.root, env=self.env,
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def one_round() -> dict[str, float | None]:
    stack = Stack()
    try:
        started = time.perf_counter()
        cold, _ = stack.timed("up")
        signal_s = stack.first_signal_s(started)
        noop, output = stack.timed("up")
        assert "nothing changed" in output, output
        down, _ = stack.timed("down")
        warm, _ = stack.timed("up")
        down_warm, _ = stack.timed("down")
        return {"cold_up_s": cold, "first_signal_s": signal_s, "noop_up_s": noop, "warm_up_s": warm,
                "down_s": min(down, down_warm)}
    finally:
        stack.remove()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=RUNS, help="rounds of cold up, no-op up, down, warm up, down")
    runs = parser.parse_args(argv).runs
    rounds = [one_round() for _ in range(runs)]

    def best(key: str) -> float | None:
        values = [r[key] for r in rounds if r[key] is not None]
        return round(min(values), 2) if values else None  # type: ignore[type-var]

    def spread(key: str) -> list[float | None]:
        return [round(r[key], 2) if r[key] is not None else None for r in rounds]  # type: ignore[arg-type]

    keys = ("cold_up_s", "warm_up_s", "noop_up_s", "down_s", "first_signal_s")
    colds = [r["cold_up_s"] for r in rounds if r["cold_up_s"] is not None]
    result: dict[str, Any] = {
        "benchmark": "tradingsystem up",
        "machine": machine_info(),
        "what": ("Wall time of the `tradingsystem up` command until it returns with every service healthy "
                 "(supervisord, embedded PostgreSQL, migrations, Workspace, TP Capital API, gateway). Cold: a new "
                 "var directory (initdb included). Warm: after `down`, the cluster kept. No-op: `up` while "
                 "everything runs. first_signal_s: from the cold `up` to the first replayed signal in GET /signals."),
        "runs": runs,
        "best": {key: best(key) for key in keys},
        "all_runs": {key: spread(key) for key in keys},
        # Met only if every cold run, not just the best one, stayed under the target.
        "target": {"cold_up_s": f"< {TARGET_COLD_S:.0f}", "worst_cold_up_s": round(max(colds), 2),
                   "met": len(colds) == runs and max(colds) < TARGET_COLD_S},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "up.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
