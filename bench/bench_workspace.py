"""Workspace API benchmark: GET by id and POST throughput, list and GET latency at fixed rates, server peak RSS.

Run from the repository root: ``python -m bench.bench_workspace`` (about three minutes). Writes
``bench/results/workspace.json`` and refreshes ``bench/results/SUMMARY.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from typing import Any

from bench.common import (
    LOAD_CORE,
    SERVER_CORE,
    Service,
    can_pin,
    comparison,
    embedded_postgres,
    log,
    low_p99,
    machine_info,
    measured_load,
    postgres_settings,
    repeat,
    run_info,
    service_env,
    throughput,
    write_result,
)
from tradingsystem.core.embedded import free_port

SEED_ITEMS = 250  # the list benchmark pages 100 of at least 200 rows, like the old service's measurement
CONCURRENCY = 16
LIST_RATE = 500.0
GET_RATE = 1000.0
CATEGORIES = ["feature", "bug", "task", "idea", "dashboard"]
PRIORITIES = ["low", "medium", "high", "critical"]
OLD = {"get_rps": 2506.0, "post_rps": 1864.0, "list_rps": 252.0, "peak_rss_mb": 236.0}
# Issue 13's goals.
TARGET = {"get_rps": 3000.0, "post_rps": 2250.0, "list_p99_ms": 20.0, "peak_rss_mb": 100.0}
POST_BODY = (
    '{"title": "Benchmark item {seq}", "description": "Created by the Workspace benchmark to measure inserts; '
    'a description of realistic length for a backlog entry.", "category": {pick:category}, '
    '"priority": {pick:priority}, "tags": ["bench", "load"], "metadata": {"source": "bench", "n": {seq}}}'
)


def seed(port: int, count: int) -> list[str]:
    """Create `count` items through the API itself; their ids feed the GET benchmark."""
    ids: list[str] = []
    for i in range(count):
        body = {"title": f"Seed item {i}", "description": "Seeded for the list and GET benchmarks. " * 3,
                "category": CATEGORIES[i % len(CATEGORIES)], "priority": PRIORITIES[i % len(PRIORITIES)],
                "tags": ["seed", f"t{i % 7}"], "metadata": {"n": i}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/items", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            ids.append(json.loads(answer.read())["data"]["id"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/items?limit=100", timeout=10) as answer:
        listed = json.loads(answer.read())
    if listed["count"] < 200 or len(listed["data"]) != 100:
        raise RuntimeError(f"seeding failed: count {listed['count']}, page {len(listed['data'])}")
    return ids


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (best is kept)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    args = parser.parse_args(argv)
    runs, duration, warmup = args.runs, args.duration, args.warmup

    info = machine_info()
    started = time.monotonic()
    with embedded_postgres() as pg:
        pg_info = postgres_settings(pg)
        port = free_port()
        with Service("workspace", service_env(pg, WORKSPACE_PORT=str(port)), port) as svc:
            log(f"workspace on :{port} pinned to core {SERVER_CORE}; seeding {SEED_ITEMS} items")
            ids = seed(port, SEED_ITEMS)
            base: dict[str, Any] = {"port": port, "warmup_s": warmup, "duration_s": duration}
            get_spec = {**base, "path": "/api/items/{pick:id}", "picks": {"id": ids}}
            list_spec = {**base, "path": "/api/items?limit=100"}


            def load(spec: dict[str, Any]) -> dict[str, Any]:
                return measured_load(spec, svc, pg)

            # The list runs first, while the table holds exactly the seeded rows; POSTs come last.
            list_tp = repeat(runs, "list limit=100 closed", lambda _: load(
                {**list_spec, "mode": "closed", "concurrency": CONCURRENCY}), throughput)
            list_lat = repeat(runs, f"list limit=100 at {LIST_RATE:.0f}/s", lambda _: load(
                {**list_spec, "mode": "open", "rate": LIST_RATE, "concurrency": 64}), low_p99)
            get_tp = repeat(runs, "GET by id closed", lambda _: load(
                {**get_spec, "mode": "closed", "concurrency": CONCURRENCY}), throughput)
            get_lat = repeat(runs, f"GET by id at {GET_RATE:.0f}/s", lambda _: load(
                {**get_spec, "mode": "open", "rate": GET_RATE, "concurrency": 64}), low_p99)
            post_tp = repeat(runs, "POST closed", lambda attempt: load(
                {**base, "mode": "closed", "concurrency": CONCURRENCY, "method": "POST", "path": "/api/items",
                 "body": POST_BODY, "picks": {"category": [json.dumps(c) for c in CATEGORIES],
                                              "priority": [json.dumps(p) for p in PRIORITIES]},
                 "seq_start": 1 + attempt * 10_000_000, "expect_status": [201]}), throughput)
            memory = svc.memory()
            log(f"server memory: {memory}")

    measurements = {
        "get_by_id_throughput": get_tp,
        "post_throughput": post_tp,
        "list_throughput": list_tp,
        "list_latency_fixed_rate": list_lat,
        "get_by_id_latency_fixed_rate": get_lat,
    }
    rows = [
        {**comparison("GET by id throughput", "req/s", get_tp["throughput_rps"], OLD["get_rps"],
                      TARGET["get_rps"], "higher"), **run_info(get_tp)},
        {**comparison("POST throughput", "req/s", post_tp["throughput_rps"], OLD["post_rps"],
                      TARGET["post_rps"], "higher"), **run_info(post_tp)},
        {**comparison("list limit=100 throughput", "req/s", list_tp["throughput_rps"], OLD["list_rps"], None,
                      "higher"), **run_info(list_tp)},
        {**comparison(f"list limit=100 p99 at {LIST_RATE:.0f} req/s", "ms", list_lat["latency_ms"]["p99"], None,
                      TARGET["list_p99_ms"], "lower"), **run_info(list_lat, latency=True)},
        comparison(f"list limit=100 p50 / p95 at {LIST_RATE:.0f} req/s", "ms", list_lat["latency_ms"]["p50"], None,
                   None, "lower") | {"measured": f"{list_lat['latency_ms']['p50']} / {list_lat['latency_ms']['p95']}"},
        {**comparison(f"GET by id p99 at {GET_RATE:.0f} req/s", "ms", get_lat["latency_ms"]["p99"], None, None,
                      "lower"), **run_info(get_lat, latency=True)},
        comparison(f"GET by id p50 / p95 at {GET_RATE:.0f} req/s", "ms", get_lat["latency_ms"]["p50"], None, None,
                   "lower") | {"measured": f"{get_lat['latency_ms']['p50']} / {get_lat['latency_ms']['p95']}"},
        comparison("server peak RSS (VmHWM)", "MB", memory["peak_rss_mb"], OLD["peak_rss_mb"],
                   TARGET["peak_rss_mb"], "lower"),
    ]
    notes = [
        f"Closed-loop throughput with {CONCURRENCY} keep-alive connections; fixed-rate runs are open-loop "
        "(latency counted from each request's scheduled time) over 64 connections.",
        f"Each run: {warmup:g} s warm-up, then {duration:g} s measured; {runs} runs per figure, best kept "
        "(highest throughput, lowest p99).",
        f"The list pages 100 of {SEED_ITEMS} rows (newest first, with the total count); it ran before the POST runs.",
        f"Server pinned: {can_pin()} (core {SERVER_CORE}); load generator on core {LOAD_CORE}; PostgreSQL unpinned "
        "on both cores, stock settings, fsync on.",
        f"Fixed-rate list: achieved {list_lat['achieved_rps']} req/s of {LIST_RATE:.0f} "
        f"(max backlog {list_lat['max_backlog']}); GET: achieved {get_lat['achieved_rps']} of {GET_RATE:.0f}.",
        "Targets: issue 13's goals.",
    ]
    result = {
        "benchmark": "workspace",
        "machine": info,
        "postgres": pg_info,
        "server": {"command": "tradingsystem serve workspace", "pinned_core": SERVER_CORE,
                   "env": {"RATE_LIMIT_MAX": "100000000", "LOG_LEVEL": "INFO"}, **memory},
        "load_generator": {"module": "bench.load", "pinned_core": LOAD_CORE},
        "seeded_items": SEED_ITEMS,
        "measurements": measurements,
        "comparison": rows,
        "notes": notes,
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    path = write_result("workspace", result)
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    outcome = main()
    print(json.dumps(outcome["comparison"], indent=2))
