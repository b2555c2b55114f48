"""Benchmark of the signal parser: messages per second on one core over the project's case table."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradingsystem.tpcapital.parser import parse_message

ROOT = Path(__file__).resolve().parents[1]
CASES_FILE = ROOT / "tests" / "data" / "signal_cases.jsonl"
RESULT_FILE = ROOT / "bench" / "results" / "parser.json"
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


def load_messages() -> list[str]:
    with CASES_FILE.open(encoding="utf-8") as fh:
        table = [json.loads(line)["text"] for line in fh if line.strip()]
    repeats = -(-MIN_MESSAGES // len(table))
    return table * repeats


def run_once(messages: list[str]) -> float:
    start = time.perf_counter()
    for text in messages:
        parse_message(text)
    return time.perf_counter() - start


def main() -> dict[str, Any]:
    messages = load_messages()
    run_once(messages[:2000])  # warm the regex caches and the interpreter
    # The machine may be busy with other work; the fastest of several runs is the least disturbed one.
    timings = [run_once(messages) for _ in range(RUNS)]
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
    RESULT_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULT_FILE.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
