"""Before/after in one run: the same loads against two source trees of the services, interleaved round by round.

Run from the repository root: ``python -m bench.compare_trees --before DIR --after DIR [--rounds N]
[--duration S] [--only SCENARIO]``, where each DIR holds a ``src/tradingsystem`` (``git archive REV src | tar
-x -C DIR`` makes one). Each tree has its own embedded PostgreSQL (its migrations stay its own); each round
starts the service from the one tree, then from the other (`PYTHONPATH`), pinned like the benchmarks, with the
benchmarks' own load specs. On a shared machine the absolute figures drift with the other work, but the two
trees meet the same drift, so the ratio after/before (of the medians over the rounds) is the figure to read.
Prints JSON and writes ``compare.json`` where the other results go.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

from bench import bench_ingest, bench_workspace
from bench.common import (
    RESULTS,
    Service,
    embedded_postgres,
    log,
    machine_info,
    measured_load,
    service_env,
)
from tradingsystem.core.embedded import free_port

INGEST = ("ingest_single", "ingest_latency", "ingest_batch")
WORKSPACE = ("workspace_get", "workspace_post", "workspace_list_latency")


def score(name: str, figures: dict[str, Any]) -> float:
    """Higher is better for throughput; the latency scenarios report p99 (lower is better)."""
    if name.endswith("latency"):
        return float(figures["latency_ms"]["p99"])
    if name.startswith("ingest"):
        return float(figures["marked_per_s"])
    return float(figures["throughput_rps"])


def ingest_specs(port: int, token: str, texts: list[str], base: dict[str, Any], seq: int) -> dict[str, Any]:
    common = {**base, "port": port, "method": "POST", "headers": {"X-Gateway-Token": token},
              "picks": {"text": texts}, "marker": bench_ingest.STORED}
    single = {**common, "path": "/ingest", "body": bench_ingest.message_template("{seq}")}
    return {
        "ingest_single": {**single, "mode": "closed", "concurrency": bench_ingest.CONCURRENCY, "seq_start": seq},
        "ingest_latency": {**single, "mode": "open", "rate": bench_ingest.LATENCY_RATE, "concurrency": 32,
                           "seq_start": seq + 3_000_000},
        # Ids "<seq><4 digits>": a batch range of its own, far from the single ones.
        "ingest_batch": {**common, "path": "/ingest/batch", "mode": "closed",
                         "body": bench_ingest.batch_template(bench_ingest.BATCH_SIZE),
                         "concurrency": bench_ingest.BATCH_CONCURRENCY, "seq_start": 100_000 + seq // 1000},
    }


def workspace_specs(port: int, ids: list[str], base: dict[str, Any], seq: int) -> dict[str, Any]:
    common = {**base, "port": port}
    return {
        "workspace_get": {**common, "mode": "closed", "concurrency": bench_workspace.CONCURRENCY,
                          "path": "/api/items/{pick:id}", "picks": {"id": ids}},
        "workspace_post": {**common, "mode": "closed", "concurrency": bench_workspace.CONCURRENCY, "method": "POST",
                           "path": "/api/items", "body": bench_workspace.POST_BODY,
                           "picks": {"category": [json.dumps(c) for c in bench_workspace.CATEGORIES],
                                     "priority": [json.dumps(p) for p in bench_workspace.PRIORITIES]},
                           "seq_start": seq, "expect_status": [201]},
        "workspace_list_latency": {**common, "mode": "open", "rate": bench_workspace.LIST_RATE, "concurrency": 64,
                                   "path": "/api/items?limit=100"},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--only", action="append", default=None, choices=[*INGEST, *WORKSPACE])
    args = parser.parse_args(argv)
    wanted = args.only or [*INGEST, *WORKSPACE]
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    base = {"warmup_s": args.warmup, "duration_s": args.duration}
    seen: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"before": [], "after": []} for n in wanted}
    info = machine_info()
    seq = 1
    with contextlib.ExitStack() as stack:
        # A database per tree: a tree's migrations (and the data its runs leave) must not be the other's.
        pgs = {label: stack.enter_context(embedded_postgres()) for label in trees}
        token = secrets.token_hex(24)
        texts = [json.dumps(t, ensure_ascii=False) for t in bench_ingest.case_texts() if t.strip()]
        if any(n in INGEST for n in wanted):
            for label, pg in pgs.items():
                # Stored by the tree's own server, so that the database gets that tree's migrations.
                bench_ingest.seed_history(pg, token, texts, PYTHONPATH=str(trees[label] / "src"))
        ids: dict[str, list[str]] = {}
        for rnd in range(args.rounds):
            # Alternate which tree goes first, so neither always meets the warmer machine.
            order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
            for label in order:
                tree, pg = trees[label], pgs[label]
                if any(n in INGEST for n in wanted):
                    port = free_port()
                    env = service_env(pg, API_PORT=str(port), GATEWAY_SECRET_TOKEN=token,
                                      PYTHONPATH=str(tree / "src"))
                    with Service("api", env, port) as svc:
                        seq += 10_000_000
                        for name, spec in ingest_specs(port, token, texts, base, seq).items():
                            if name in wanted:
                                figures = measured_load(spec, svc, pg)
                                seen[name][label].append(figures)
                                log(f"round {rnd + 1} {label} {name}: {score(name, figures)}")
                if any(n in WORKSPACE for n in wanted):
                    port = free_port()
                    env = service_env(pg, WORKSPACE_PORT=str(port), PYTHONPATH=str(tree / "src"))
                    with Service("workspace", env, port) as svc:
                        if label not in ids:
                            ids[label] = bench_workspace.seed(port, bench_workspace.SEED_ITEMS)
                        seq += 10_000_000
                        for name, spec in workspace_specs(port, ids[label], base, seq).items():
                            if name in wanted:
                                figures = measured_load(spec, svc, pg)
                                seen[name][label].append(figures)
                                log(f"round {rnd + 1} {label} {name}: {score(name, figures)}")
    table = {}
    for name, by_tree in seen.items():
        med = {label: statistics.median(score(name, f) for f in runs) for label, runs in by_tree.items()}
        table[name] = {"before": [score(name, f) for f in by_tree["before"]],
                       "after": [score(name, f) for f in by_tree["after"]],
                       "ratio_after_before": round(med["after"] / med["before"], 2) if med["before"] else None,
                       "server_cores_after": [f.get("server_cores") for f in by_tree["after"]],
                       "postgres_cores_after": [f.get("postgres_cores") for f in by_tree["after"]]}
    result = {"benchmark": "compare", "machine": info, "trees": {k: str(v) for k, v in trees.items()},
              "method": {"rounds": args.rounds, **base}, "table": table, "finished": time.time()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    print(json.dumps(main()["table"], indent=2))
