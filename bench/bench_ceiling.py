"""Stack ceiling: what one core allows a bare app doing one insert per request, per ASGI server and framework.

Run from the repository root: ``python -m bench.bench_ceiling`` (about six minutes; ``--runs 1 --duration 1
--warmup 0.5`` for a smoke run). Writes ``ceiling.json`` where the other results go. The apps are in
``bench/ceiling_app.py``: each request's JSON body is parsed and one row is inserted with
``INSERT … ON CONFLICT DO NOTHING`` (its own commit, fsync on), then a small JSON answer is sent. The same
method as the service benchmarks: the server pinned to core 0, the load generator to core 1, the embedded
PostgreSQL unpinned. `/noop` runs show the HTTP stack alone (no database). The service figures of
``ingest.json`` and ``workspace.json`` are read against these.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    LOAD_CORE,
    SERVER_CORE,
    Service,
    can_pin,
    embedded_postgres,
    log,
    machine_info,
    measured_load,
    pinned,
    postgres_settings,
    psql,
    repeat,
    service_env,
    throughput,
    write_result,
)
from tradingsystem.core.embedded import free_port

CONCURRENCY = 16
# (server, app attribute of bench.ceiling_app)
VARIANTS: tuple[tuple[str, str], ...] = (
    ("uvicorn", "raw"),
    ("granian", "raw"),
    ("uvicorn", "starlette"),
    ("granian", "starlette"),
    ("uvicorn", "fastapi"),
    ("uvicorn", "fastapi_full"),
)
BODY = ('{"channelId": "-1001649127710", "messageId": {seq}, "timestamp": "{now}", "text": "BUY PETR4 30.10", '
        '"kind": "new", "source": "user", "photos": []}')
TABLE = ("CREATE TABLE IF NOT EXISTS bench_ceiling (id bigserial PRIMARY KEY, channel_id text NOT NULL, "
         "message_id bigint NOT NULL, body text NOT NULL, received_at timestamptz NOT NULL DEFAULT now(), "
         "UNIQUE (channel_id, message_id))")


class BareServer(Service):
    """One bare app under uvicorn or granian, pinned like the services."""

    def __init__(self, server: str, app: str, env: dict[str, str], port: int) -> None:
        super().__init__(f"{server}-{app}", env, port)
        self.server, self.app = server, app

    @property
    def command(self) -> list[str]:
        target = f"bench.ceiling_app:{self.app}"
        bindir = Path(sys.executable).parent
        if self.server == "granian":
            cmd = [str(bindir / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--no-ws",
                   "--log-level", "warning", target]
        else:
            cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(self.port),
                   "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        return pinned(SERVER_CORE, cmd)

    def memory(self) -> dict[str, Any]:
        """Peak RSS of the process that serves: granian's worker, not its supervisor."""
        figures = super().memory()
        peaks = []
        for pid in self.pids()[1:]:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="utf-8") as fh:
                peaks += [int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:")]
        if peaks:
            figures["worker_peak_rss_mb"] = round(max(peaks), 1)
        return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (best is kept)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    args = parser.parse_args(argv)
    info = machine_info()
    started = time.monotonic()
    measurements: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    with embedded_postgres() as pg:
        pg_info = postgres_settings(pg)
        psql(pg, TABLE)
        seq = 1
        for server, app in VARIANTS:
            port = free_port()
            # The bare apps live in bench/, so they run from the repository root.
            root = Path(__file__).resolve().parents[1]
            env = {**service_env(pg), "PYTHONPATH": f"{root}:{root / 'src'}"}
            with BareServer(server, app, env, port) as svc:
                figures: dict[str, Any] = {}
                for path in ("/insert", "/noop"):
                    def one(attempt: int, path: str = path, port: int = port, svc: BareServer = svc) -> dict[str, Any]:
                        nonlocal seq
                        seq += 10_000_000
                        return measured_load({"port": port, "mode": "closed", "concurrency": CONCURRENCY,
                                              "warmup_s": args.warmup, "duration_s": args.duration,
                                              "method": "POST", "path": path, "body": BODY, "seq_start": seq},
                                             svc, pg)
                    figures[path.strip("/")] = repeat(args.runs, f"{server} {app} {path}", one, throughput)
                figures["memory"] = svc.memory()
            name = f"{server}_{app}"
            measurements[name] = figures
            rows.append({"server": server, "app": app,
                         "insert_rps": figures["insert"]["throughput_rps"],
                         "insert_runs": figures["insert"]["runs"],
                         "insert_cores": [figures["insert"]["server_cores"], figures["insert"]["postgres_cores"]],
                         "noop_rps": figures["noop"]["throughput_rps"], "noop_runs": figures["noop"]["runs"],
                         "peak_rss_mb": figures["memory"].get("worker_peak_rss_mb", figures["memory"]["peak_rss_mb"])})
    result = {
        "benchmark": "ceiling",
        "machine": info,
        "postgres": pg_info,
        "method": {"concurrency": CONCURRENCY, "runs": args.runs, "duration_s": args.duration,
                   "warmup_s": args.warmup, "server_core": SERVER_CORE, "load_core": LOAD_CORE,
                   "pinned": can_pin(), "body": BODY, "table": TABLE},
        "table": rows,
        "measurements": measurements,
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    path = write_result("ceiling", result)
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    outcome = main()
    print(json.dumps(outcome["table"], indent=2))
