"""Failure-queue replay benchmark: `tradingsystem gateway queue replay` of a large queue into the real API.

Run from the repository root: ``python -m bench.bench_queue_replay [--lines 20000]`` (about a minute).
Writes ``bench/results/queue_replay.json``.

An embedded PostgreSQL (stock settings, fsync on), ``tradingsystem serve api`` pinned to one core, and a
failure queue of ``--lines`` unique messages (the lines an outage leaves behind: payload plus
``failedAt``, ``attempts``, ``lastError``) written with the gateway's own ``FailureQueue``. The real command
replays it, pinned to the other core; the figure is lines per second over the wall-clock time of the whole
command (start-up included), with the number of ``/ingest/batch`` and ``/ingest`` requests the API counted
and the rows it stored.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    LOAD_CORE,
    Service,
    embedded_postgres,
    log,
    machine_info,
    pinned,
    psql,
    service_env,
    write_result,
)
from tradingsystem.core.embedded import free_port
from tradingsystem.gateway.failure_queue import FailureQueue


def requests_by_path(port: int) -> dict[str, float]:
    """POSTs the API answered per route: the count of its request-duration histogram, summed over statuses."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("tpcapital_http_request_duration_seconds_count{") or 'method="POST"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        for path in ("/ingest/batch", "/ingest"):
            if f'route="{path}"' in name:
                out[path] = out.get(path, 0.0) + float(value)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args(argv)
    info = machine_info()
    token = "bench-gateway-token-" + os.urandom(8).hex()
    with embedded_postgres() as pg:
        port = free_port()
        env = service_env(pg, API_PORT=str(port), GATEWAY_SECRET_TOKEN=token)
        with Service("api", env, port), tempfile.TemporaryDirectory(prefix="ts-bench-queue-") as tmp:
            data = Path(tmp) / "gateway"
            queue = FailureQueue(data / "failure-queue.jsonl", 2**40, 2**40)
            for n in range(1, args.lines + 1):
                queue.append({"channelId": "-1001649127710", "messageId": n, "timestamp": "2025-10-24T19:30:39Z",
                              "text": f"Ativo: PETR4 Compra: 30,10 Alvo 1: 31,00 Stop: 29,50 ({n})", "kind": "new",
                              "editDate": None, "photos": [], "source": "bot", "chatTitle": "TP Capital",
                              "forwardedFrom": None}, 4, "ConnectError: All connection attempts failed")
            before = requests_by_path(port)
            cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "API_", "TELEGRAM_"))}
            cli_env.update(GATEWAY_DATA_DIR=str(data), API_ENDPOINT=f"http://127.0.0.1:{port}/ingest",
                           GATEWAY_SECRET_TOKEN=token)
            log(f"replaying {args.lines} lines")
            started = time.perf_counter()
            result = subprocess.run(pinned(LOAD_CORE, [str(Path(sys.executable).parent / "tradingsystem"),
                                                       "gateway", "queue", "replay"]),
                                    env=cli_env, cwd=tmp, capture_output=True, text=True, timeout=1800, check=False)
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"queue replay failed ({result.returncode}): {result.stdout}{result.stderr}")
            after = requests_by_path(port)
            stored = int(psql(pg, "SELECT count(*) FROM tp_capital.messages"))
            remaining = queue.status().lines
    figures = {
        "lines": args.lines,
        "seconds": round(seconds, 2),
        "lines_per_s": round(args.lines / seconds, 1),
        "rows_stored": stored,
        "lines_remaining": remaining,
        "requests": {path: after.get(path, 0.0) - before.get(path, 0.0) for path in ("/ingest/batch", "/ingest")},
        "cli_output": result.stdout.strip().splitlines()[-1:],
    }
    log(f"{figures}")
    path = write_result("queue_replay", {"machine": info, "queue_replay": figures})
    log(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
