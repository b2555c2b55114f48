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
    ("bench.profile_batch_sql", ("--batches", "1", "--rounds", "1")),
    ("bench.bench_tail", ("--runs", "1", "--duration", "1", "--warmup", "0.5")),
    ("bench.bench_gateway", ("--runs", "1", "--duration", "1", "--warmup", "10", "--rate", "50",
                             "--low-rate", "20", "--import-messages", "1000", "--journal-seconds", "0.2",
                             "--profile-import-messages", "1000", "--no-profile", "--max-wait", "0")),
    ("bench.bench_gateway_memory", ("--runs", "1", "--settle", "1")),
    ("bench.bench_up", ("--runs", "1")),
    ("bench.bench_containers", ("--runs", "1", "--edits", "1")),
)
# Benchmarks that need a Docker engine with Compose v2; without one they are left out with a line saying so.
NEEDS_ENGINE = {"bench.bench_containers"}
# Reports that tests produce as they check them (the systemd unit's exposure score): a recording run has
# those tests write them into bench/results/ too (BENCH_RESULTS_DIR); otherwise they go to var/bench/reports/.
REPORT_TESTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("systemd-security.txt", ("tests/unit/test_deploy_systemd.py::test_security_exposure_is_within_goal",)),
    ("systemd-security-container.txt", ("-m", "container", "tests/container/test_systemd_gateway.py")),
)
SCRATCH = ROOT / "var" / "bench"


def engine_answers() -> bool:
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and info.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", action="store_true",
                        help=f"full runs that rewrite {RECORDED.relative_to(ROOT)}/ (with the machine and date)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where a short run writes (default: a new directory under {SCRATCH.relative_to(ROOT)}/)")
    parser.add_argument("--only", action="append", default=None, metavar="NAME",
                        help="run only this benchmark (parser, ceiling, workspace, ingest, gateway, gateway_memory, "
                             "up, containers); repeatable")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME",
                        help="leave this benchmark out; repeatable")
    args = parser.parse_args(argv)
    if args.record and args.out is not None:
        parser.error("--record writes bench/results/; --out is for short runs")
    selected = [(module, short) for module, short in BENCHMARKS
                if (args.only is None or module.removeprefix("bench.bench_") in args.only)
                and module.removeprefix("bench.bench_") not in args.skip]
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
    engine = engine_answers() if any(module in NEEDS_ENGINE for module, _ in selected) else False
    for module, short in selected:
        if module in NEEDS_ENGINE and not engine:
            log(f"{module} left out: no Docker engine with Compose v2 answers (tools/ci/docker-engine.sh starts one)")
            continue
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
    if args.record and args.only is None:
        for report, test_args in REPORT_TESTS:
            if "container" in test_args and not engine_answers():
                log(f"{report} left out: no Docker engine answers")
                continue
            log(f"$ pytest {' '.join(test_args)}  (writes {report})")
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *test_args],
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
            if result.returncode != 0:
                failed.append(report)
                log(f"{report}: its test failed (exit {result.returncode})")
    log(f"all done in {time.monotonic() - started:.0f} s; results in {out}")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
