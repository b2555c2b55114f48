"""Where a batch's time goes in PostgreSQL: milliseconds per 1,000 messages in each ingest function.

Run from the repository root: ``python -m bench.profile_batch_sql [--batches 10] [--rounds 2] [--size 1000]
[--before DIR]`` (about a minute per tree and round). Writes ``bench/results/batch_sql.json``.

Each run is a child process on a fresh embedded PostgreSQL (stock settings, fsync on) that stores a history
of ten batches through the repository's own ingest call (`tpcapital.repository.ingest`, the statement the API
sends), runs ``ANALYZE``, then stores ``--batches`` more with ``track_functions = 'pl'`` and reads
``pg_stat_user_functions``: total and self time of every function, per batch. With ``--size N`` each batch of
1,000 goes in calls of N messages, as the API's groups of concurrent single deliveries do (decision 13), so the
fixed cost of a call shows next to the cost per message. The texts are those of
``tests/data/signal_cases.jsonl`` picked at random, as in ``bench_ingest``. With ``--before DIR`` (a
directory holding a ``src/tradingsystem``, as ``git archive REV src | tar -x -C DIR`` makes one) the same runs
are made with that tree's code and migrations, interleaved round by round, so both meet the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, log, machine_info, write_result

BATCH = 1000
HISTORY = 10
CHANNEL = "-1001649127710"
CASES = ROOT / "tests" / "data" / "signal_cases.jsonl"


async def _worker(batches: int, size: int) -> dict[str, Any]:
    # Imported here: the child's PYTHONPATH decides which tree these come from.
    import asyncpg

    from tradingsystem.core.embedded import EmbeddedPostgres, free_port
    from tradingsystem.core.migrations import migrate
    from tradingsystem.tpcapital import repository
    from tradingsystem.tpcapital.models import IngestMessage
    from tradingsystem.tpcapital.service import parse_for_storage

    texts = [json.loads(line)["text"] for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(13)
    next_id = 9_000_000_000

    def batch(count: int = BATCH) -> tuple[list[Any], list[dict[str, Any]]]:
        nonlocal next_id
        now = datetime.now(UTC)
        messages = []
        for _ in range(count):
            next_id += 1
            messages.append(IngestMessage(CHANNEL, next_id, now, rng.choice(texts), "new", None, [], "user",
                                          "Operações | TP Capital", None))
        return messages, [parse_for_storage(m) for m in messages]

    with tempfile.TemporaryDirectory(prefix="ts-bench-batch-sql-") as scratch:
        pg = EmbeddedPostgres(Path(scratch) / "pg", port=free_port())
        pg.init()
        pg.start()
        try:
            pg.ensure_database()
            conn = await asyncpg.connect(pg.url)
            await migrate(conn, ["tp_capital"])
            for _ in range(HISTORY):
                await repository.ingest(conn, *batch())
            await conn.execute("ANALYZE")
            await conn.close()
            # A new connection, so that its plans are made on the analysed tables, as in a running server.
            conn = await asyncpg.connect(pg.url)
            await conn.execute("SET track_functions = 'pl'")
            await conn.execute("SELECT pg_stat_reset()")
            elapsed = 0.0
            for _ in range(batches * BATCH // size):
                work = batch(size)
                started = time.perf_counter()
                await repository.ingest(conn, *work)
                elapsed += time.perf_counter() - started
            await conn.execute("SELECT pg_stat_force_next_flush()")
            await conn.close()
            conn = await asyncpg.connect(pg.url)
            rows = await conn.fetch(
                "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions "
                "WHERE schemaname = 'tp_capital' ORDER BY total_time DESC")
            sizes = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM tp_capital.messages) AS messages, "
                "(SELECT count(*) FROM tp_capital.signals) AS signals, "
                "(SELECT count(*) FROM tp_capital.signal_events) AS events")
            await conn.close()
        finally:
            pg.destroy()
    return {
        "batches": batches,
        "size": size,
        "statement_ms_per_batch": round(elapsed / batches * 1000, 1),
        "functions_ms_per_batch": {
            r["funcname"]: {"total": round(r["total_time"] / batches, 1), "self": round(r["self_time"] / batches, 1),
                            "calls_per_batch": round(r["calls"] / batches, 1)}
            for r in rows
        },
        "database_at_end": dict(sizes),
    }


def _run_tree(tree: Path, batches: int, size: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, "-m", "bench.profile_batch_sql", "--worker", "--batches", str(batches),
                             "--size", str(size)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the run on {tree} failed:\n{result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10, help="measured batches of 1,000 per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per tree")
    parser.add_argument("--size", type=int, default=BATCH,
                        help="messages per call (a divisor of 1000; 8 is a group of concurrent single deliveries)")
    parser.add_argument("--before", type=Path, default=None, help="another source tree to run interleaved")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size < 1 or BATCH % args.size:
        parser.error(f"--size must divide {BATCH}")
    if args.worker:
        figures = asyncio.run(_worker(args.batches, args.size))
        print(json.dumps(figures))
        return figures
    trees = {"current": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    info = machine_info()
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    for round_no in range(args.rounds):
        order = list(trees) if round_no % 2 == 0 else list(reversed(trees))
        for label in order:
            figures = _run_tree(trees[label], args.batches, args.size)
            runs[label].append(figures)
            functions = {name: f["total"] for name, f in figures["functions_ms_per_batch"].items()}
            log(f"{label}: {figures['statement_ms_per_batch']} ms per batch; {functions}")
    result = {"benchmark": "profile_batch_sql", "machine": info, "method": {
        "batch": BATCH, "size": args.size, "history_batches": HISTORY, "measured_batches": args.batches,
        "rounds": args.rounds,
        "trees": {label: str(path) for label, path in trees.items()}}, "runs": runs}
    path = write_result("batch_sql", result)
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
