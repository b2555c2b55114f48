"""The latency tail of a single ingest against the machine's own floor, open loop at 200 requests/s.

Run from the repository root: ``python -m bench.bench_tail [--runs 3] [--duration 10]`` (about three minutes).
Writes ``bench/results/tail.json``.

The `/ingest` p99 goal (< 4 ms at 200 msg/s) sits in a range where the machine itself matters, so this puts the
figure next to what the same load gets from the least a server can do, on the same machine in one run:

- ``floor_noop``: the bare raw ASGI app of ``bench/ceiling_app.py`` answering without any work;
- ``floor_insert``: the same app doing one ``INSERT … ON CONFLICT DO NOTHING`` and one commit (fsync on);
- ``ingest``: the real TP Capital API's ``POST /ingest`` (the benchmark's message mix, every id new), with
  PostgreSQL unpinned as everywhere else, and ``ingest_pg_pinned`` with every PostgreSQL process of this run
  pinned to the load generator's core, so that its backends never run on the server's core.

Server on core 0, load generator on core 1 (as in the other benchmarks); the two ingest variants alternate run
by run. Every run's p50 / p99 / max is kept; the medians are the figures to read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import psutil

from bench.bench_ceiling import BODY, TABLE, BareServer
from bench.bench_ingest import LATENCY_RATE, STORED, case_texts, message_template, seed_history
from bench.common import (
    LOAD_CORE,
    Service,
    can_pin,
    embedded_postgres,
    log,
    machine_info,
    measured_load,
    psql,
    service_env,
    write_result,
)
from tradingsystem.core.embedded import EmbeddedPostgres, free_port

ROOT = Path(__file__).resolve().parents[1]


def _postgres_processes(pg: EmbeddedPostgres) -> list[psutil.Process]:
    pid = pg.running_pid()
    if pid is None:
        raise RuntimeError("the embedded PostgreSQL is not running")
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def _pin_postgres(pg: EmbeddedPostgres, cores: list[int]) -> None:
    # Backends forked later inherit the postmaster's affinity; the ones already serving the API are set here.
    for process in _postgres_processes(pg):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.cpu_affinity(cores)


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    latency = result["latency_ms"]
    return {"p50": latency["p50"], "p99": latency["p99"], "max": latency["max"],
            "achieved_rps": result.get("achieved_rps")}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"median_p50_ms": statistics.median(r["p50"] for r in runs),
            "median_p99_ms": statistics.median(r["p99"] for r in runs), "runs": runs}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    args = parser.parse_args(argv)
    info = machine_info()
    started = time.monotonic()
    open_loop = {"mode": "open", "rate": LATENCY_RATE, "concurrency": 32, "warmup_s": args.warmup,
                 "duration_s": args.duration, "method": "POST"}
    runs: dict[str, list[dict[str, Any]]] = {"floor_noop": [], "floor_insert": [], "ingest": [],
                                             "ingest_pg_pinned": []}
    seq = 1
    with embedded_postgres() as pg:
        psql(pg, TABLE)
        port = free_port()
        env = {**service_env(pg), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
        with BareServer("uvicorn", "raw", env, port) as bare:
            for attempt in range(args.runs):
                for path, name in (("/noop", "floor_noop"), ("/insert", "floor_insert")):
                    seq += 10_000_000
                    figures = _figures(measured_load({**open_loop, "port": port, "path": path, "body": BODY,
                                                      "seq_start": seq}, bare, pg))
                    runs[name].append(figures)
                    log(f"{name} run {attempt + 1}/{args.runs}: p50 {figures['p50']} ms, p99 {figures['p99']} ms")

        texts = [json.dumps(t, ensure_ascii=False) for t in case_texts() if t.strip()]
        token = secrets.token_hex(24)
        history = seed_history(pg, token, texts)
        port = free_port()
        with Service("api", service_env(pg, API_PORT=str(port), GATEWAY_SECRET_TOKEN=token), port) as svc:
            spec = {**open_loop, "port": port, "path": "/ingest", "body": message_template("{seq}"),
                    "headers": {"X-Gateway-Token": token}, "picks": {"text": texts}, "marker": STORED}
            all_cores = sorted(os.sched_getaffinity(0))
            variants = ("ingest", "ingest_pg_pinned") if can_pin() else ("ingest",)
            try:
                for attempt in range(args.runs):
                    order = variants if attempt % 2 == 0 else tuple(reversed(variants))
                    for name in order:
                        _pin_postgres(pg, [LOAD_CORE] if name == "ingest_pg_pinned" else all_cores)
                        seq += 10_000_000
                        figures = _figures(measured_load({**spec, "seq_start": seq}, svc, pg))
                        runs[name].append(figures)
                        log(f"{name} run {attempt + 1}/{args.runs}: p50 {figures['p50']} ms, "
                            f"p99 {figures['p99']} ms")
            finally:
                _pin_postgres(pg, all_cores)
    result = {
        "benchmark": "tail",
        "machine": info,
        "method": {"rate_per_s": LATENCY_RATE, "connections": 32, "runs": args.runs, "duration_s": args.duration,
                   "warmup_s": args.warmup, "history_messages": history["messages"],
                   "floor_app": "bench/ceiling_app.py raw under uvicorn (httptools, uvloop)"},
        "figures": {name: _summary(values) for name, values in runs.items()},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = write_result("tail", result)
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
