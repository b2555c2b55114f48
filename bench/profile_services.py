"""Where each request's CPU goes: py-spy samples the pinned server while the benchmark's own load runs.

Run from the repository root: ``python -m bench.profile_services [--duration S] [--only NAME]`` (about two
minutes; needs py-spy, a development dependency, and the right to trace the server: root, or
``kernel.yama.ptrace_scope`` 0). For each scenario the real service (``tradingsystem serve``) runs pinned to
core 0 against an embedded PostgreSQL, ``bench.load`` drives it from core 1 with the benchmark's spec, and
py-spy records the server (``--idle`` off: only time on the CPU counts). Writes ``profile.json`` (the share of
samples per layer and the hottest functions, self and inclusive) and the collapsed stacks next to it, where the
other results go; the figures are shares of the server's CPU, so they hold on a loaded machine too.
"""

from __future__ import annotations

import argparse
import collections
import json
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import bench_ingest, bench_workspace
from bench.common import RESULTS, Service, embedded_postgres, log, machine_info, run_load, service_env
from tradingsystem.core.embedded import free_port

# Which layer a frame belongs to, by the file it runs in (first match wins).
LAYERS: tuple[tuple[str, str], ...] = (
    ("(tradingsystem/tpcapital/parser", "parser"),
    ("(tradingsystem/core/logging", "logging (ours)"),
    ("(tradingsystem/core/http", "edge middleware (ours)"),
    ("(tradingsystem/", "service code (ours)"),
    ("(structlog/", "structlog"),
    ("(logging/", "stdlib logging"),
    ("(prometheus_client/", "prometheus_client"),
    ("(limits/", "rate limiter (limits)"),
    ("(asyncpg/", "asyncpg"),
    ("(pydantic", "pydantic"),
    ("(fastapi/", "fastapi"),
    ("(starlette/", "starlette"),
    ("(uvicorn/", "uvicorn"),
    ("(orjson", "orjson"),
    ("(asyncio/", "asyncio / uvloop"),
    ("(uvloop/", "asyncio / uvloop"),
)


def layer_of(frame: str) -> str:
    for needle, name in LAYERS:
        if needle in frame:
            return name
    return "other"


def summarise(collapsed: Path, top: int = 25) -> dict[str, Any]:
    """Shares of the samples: by the layer of the innermost frame (self), and the hottest functions."""
    self_layer: collections.Counter[str] = collections.Counter()
    self_fn: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        # The innermost frame of ours or a library's that is not the event loop's plumbing.
        self_layer[layer_of(frames[-1])] += count
        self_fn[frames[-1]] += count
        for frame in set(frames):
            incl_fn[frame] += count

    def share(counter: collections.Counter[str], n: int) -> list[dict[str, Any]]:
        return [{"frame": k, "share": round(v / total, 3)} for k, v in counter.most_common(n)]

    return {"samples": total, "self_by_layer": {k: round(v / total, 3) for k, v in self_layer.most_common()},
            "self_top": share(self_fn, top), "inclusive_top": share(incl_fn, top)}


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([pyspy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "250",
                             "-f", "raw", "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profiled(svc: Service, spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run the load; py-spy records the server through the measured part of it."""
    figures: dict[str, Any] = {}
    loader = threading.Thread(target=lambda: figures.update(run_load(spec)))
    loader.start()
    time.sleep(float(spec.get("warmup_s", 0)))
    assert svc.proc is not None
    spy = record(svc.proc.pid, float(spec["duration_s"]) - 0.5, out)
    loader.join()
    spy.wait(timeout=60)
    summary = summarise(out) if out.exists() else {"error": "py-spy wrote nothing (no permission to trace?)"}
    return {"rps": figures.get("throughput_rps"), "marked_per_s": figures.get("marked_per_s"), **summary}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds profiled per scenario")
    parser.add_argument("--only", action="append", default=None, help="ingest or workspace; repeatable")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = {"warmup_s": 1.0, "duration_s": args.duration, "mode": "closed"}
    scenarios: dict[str, Any] = {}
    with embedded_postgres() as pg:
        if args.only is None or "ingest" in args.only:
            token = secrets.token_hex(24)
            texts = [json.dumps(t, ensure_ascii=False) for t in bench_ingest.case_texts() if t.strip()]
            bench_ingest.seed_history(pg, token, texts)
            port = free_port()
            with Service("api", service_env(pg, API_PORT=str(port), GATEWAY_SECRET_TOKEN=token), port) as svc:
                common = {**base, "port": port, "method": "POST", "headers": {"X-Gateway-Token": token},
                          "picks": {"text": texts}, "marker": bench_ingest.STORED}
                scenarios["ingest_single"] = profiled(svc, {
                    **common, "path": "/ingest", "body": bench_ingest.message_template("{seq}"),
                    "concurrency": bench_ingest.CONCURRENCY, "seq_start": 1}, RESULTS / "profile-ingest_single.txt")
                scenarios["ingest_batch"] = profiled(svc, {
                    **common, "path": "/ingest/batch", "body": bench_ingest.batch_template(bench_ingest.BATCH_SIZE),
                    "concurrency": bench_ingest.BATCH_CONCURRENCY, "seq_start": 70_000},
                    RESULTS / "profile-ingest_batch.txt")
        if args.only is None or "workspace" in args.only:
            port = free_port()
            with Service("workspace", service_env(pg, WORKSPACE_PORT=str(port)), port) as svc:
                ids = bench_workspace.seed(port, bench_workspace.SEED_ITEMS)
                common = {**base, "port": port, "concurrency": bench_workspace.CONCURRENCY}
                scenarios["workspace_list"] = profiled(svc, {**common, "path": "/api/items?limit=100"},
                                                       RESULTS / "profile-workspace_list.txt")
                scenarios["workspace_get"] = profiled(svc, {**common, "path": "/api/items/{pick:id}",
                                                            "picks": {"id": ids}},
                                                      RESULTS / "profile-workspace_get.txt")
                scenarios["workspace_post"] = profiled(svc, {
                    **common, "method": "POST", "path": "/api/items", "body": bench_workspace.POST_BODY,
                    "picks": {"category": [json.dumps(c) for c in bench_workspace.CATEGORIES],
                              "priority": [json.dumps(p) for p in bench_workspace.PRIORITIES]},
                    "seq_start": 1, "expect_status": [201]}, RESULTS / "profile-workspace_post.txt")
    result = {"benchmark": "profile", "machine": machine_info(), "scenarios": scenarios}
    path = RESULTS / "profile.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    outcome = main()
    for name, figures in outcome["scenarios"].items():
        print(name, figures.get("rps"), json.dumps(figures.get("self_by_layer")))
