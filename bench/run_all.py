"""Every benchmark in turn: a short run into a scratch directory, or (`--record`) the full run into bench/results/."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RECORDED, ROOT, log, machine_info

# (module, arguments of the short mode): each benchmark once, for seconds, not minutes. The short
# figures only show that every benchmark runs; they are not results.
BENCHMARKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bench.bench_parser", ("--runs", "1", "--messages", "5000")),
    ("bench.bench_ceiling", ("--runs", "1", "--duration", "1", "--warmup", "0.5")),
    ("bench.bench_workspace", ("--runs", "1", "--duration", "1", "--warmup", "0.5")),
    ("bench.bench_ingest", ("--runs", "1", "--duration", "1", "--warmup", "0.5")),
    ("bench.bench_gateway", ("--runs", "1", "--duration", "1", "--warmup", "10", "--rate", "50",
                             "--low-rate", "20", "--import-messages", "1000", "--journal-seconds", "0.2",
                             "--profile-import-messages", "1000", "--no-profile", "--max-wait", "0")),
    ("bench.bench_up", ("--runs", "1")),
)
SCRATCH = ROOT / "var" / "bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", action="store_true",
                        help=f"full runs that rewrite {RECORDED.relative_to(ROOT)}/ (with the machine and date)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where a short run writes (default: a new directory under {SCRATCH.relative_to(ROOT)}/)")
    parser.add_argument("--only", action="append", default=None, metavar="NAME",
                        help="run only this benchmark (parser, ceiling, workspace, ingest, gateway, up); repeatable")
    args = parser.parse_args(argv)
    if args.record and args.out is not None:
        parser.error("--record writes bench/results/; --out is for short runs")
    selected = [(module, short) for module, short in BENCHMARKS
                if args.only is None or module.removeprefix("bench.bench_") in args.only]
    if not selected:
        parser.error(f"no benchmark named {args.only}")
    if args.record:
        out = RECORDED
    else:
        out = args.out or SCRATCH / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    mode = "full runs, recorded" if args.record else "short runs (figures are not results)"
    log(f"{len(selected)} benchmarks, {mode}, into {out}; {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['date']}")
    env = {**os.environ, "BENCH_RESULTS_DIR": str(out)}
    failed: list[str] = []
    started = time.monotonic()
    for module, short in selected:
        command = [sys.executable, "-m", module, *([] if args.record else short)]
        log(f"$ {' '.join(command[1:])}")
        begun = time.monotonic()
        # The benchmarks' own JSON on stdout is already in their result files.
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            failed.append(module)
            log(f"{module} failed (exit {result.returncode})")
        else:
            log(f"{module} done in {time.monotonic() - begun:.0f} s")
    log(f"all done in {time.monotonic() - started:.0f} s; results in {out}")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
