"""Benchmark of the signal parser: messages per second on one core over the project's case table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import RESULTS, ROOT
from tradingsystem.tpcapital.parser import parse_message

CASES_FILE = ROOT / "tests" / "data" / "signal_cases.jsonl"
MIN_MESSAGES = 100_000
RUNS = 5


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_messages(minimum: int = MIN_MESSAGES) -> list[str]:
    with CASES_FILE.open(encoding="utf-8") as fh:
        table = [json.loads(line)["text"] for line in fh if line.strip()]
    repeats = -(-minimum // len(table))
    return table * repeats


def run_once(messages: list[str]) -> float:
    start = time.perf_counter()
    for text in messages:
        parse_message(text)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=RUNS, help="timed passes (the fastest is kept)")
    parser.add_argument("--messages", type=int, default=MIN_MESSAGES, help="messages per pass (at least)")
    args = parser.parse_args(argv)
    messages = load_messages(args.messages)
    run_once(messages[:2000])  # warm the regex caches and the interpreter
    # The machine may be busy with other work; the fastest of several runs is the least disturbed one.
    timings = [run_once(messages) for _ in range(args.runs)]
    seconds = min(timings)
    result: dict[str, Any] = {
        "benchmark": "tpcapital.parser.parse_message",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
        },
        "python": sys.version.split()[0],
        "messages": len(messages),
        "seconds": round(seconds, 4),
        "messages_per_second": round(len(messages) / seconds),
        "runs_seconds": [round(t, 4) for t in timings],
        "mix": "tests/data/signal_cases.jsonl repeated (signals, updates and noise)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parser.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
