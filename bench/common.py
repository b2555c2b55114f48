"""What the service benchmarks share: machine facts, a throwaway PostgreSQL, pinned processes, results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from tradingsystem.core.embedded import EmbeddedPostgres, bin_dir, free_port

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "bench" / "results"
# `bench.run_all` points this at a scratch directory unless it records: only a recording run rewrites
# the committed results.
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or RECORDED)
SERVER_CORE = 0
LOAD_CORE = 1
# Generous: a busy shared machine can make the first start (imports, migrations) slow.
START_TIMEOUT_S = 90.0
# How to read a result file's figures. Whether the machine was quiet is not assumed: the load average at
# the start of each benchmark is recorded beside it.
READING_NOTE = "Each figure is the best of several runs; every run's figure is recorded next to it."


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": READING_NOTE,
    }


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(core: int, cmd: list[str]) -> list[str]:
    """`cmd` bound to one core with taskset (unpinned on a one-core machine, where pinning means nothing)."""
    return ["taskset", "-c", str(core), *cmd] if can_pin() else cmd


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# PostgreSQL


@contextlib.contextmanager
def embedded_postgres() -> Iterator[EmbeddedPostgres]:
    """A fresh embedded PostgreSQL in a temporary directory, stock settings (fsync on), removed afterwards.

    It is started before anything is pinned, so the server and its backends may use both cores.
    """
    workdir = Path(tempfile.mkdtemp(prefix="ts-bench-pg-"))
    pg = EmbeddedPostgres(workdir / "data", port=free_port(), database="bench")
    try:
        pg.start()
        fsync = psql(pg, "SHOW fsync")
        if fsync != "on":
            raise RuntimeError(f"benchmarks need fsync on, the server says {fsync!r}")
        yield pg
    finally:
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def psql(pg: EmbeddedPostgres, sql: str) -> str:
    result = subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql, pg.url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def postgres_settings(pg: EmbeddedPostgres) -> dict[str, str]:
    names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers", "max_connections")
    return {name: psql(pg, f"SHOW {name}") for name in names}


# The service under test


class Service:
    """`tradingsystem serve NAME` pinned to SERVER_CORE, started in a clean directory (no stray .env)."""

    # What answers 200 once the service is ready to be measured.
    ready_path = "/health"

    def __init__(self, name: str, env: dict[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self.workdir = Path(tempfile.mkdtemp(prefix=f"ts-bench-{name}-"))
        self.logfile = self.workdir / "service.log"
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("DATABASE_", "TIMESCALEDB_", "RATE_LIMIT_", "GATEWAY_", "API_", "WORKSPACE_"))}
        self.env = {**clean, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return pinned(SERVER_CORE, [str(Path(sys.executable).parent / "tradingsystem"), "serve", self.name])

    def start(self) -> None:
        with self.logfile.open("wb") as out:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {START_TIMEOUT_S:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.logfile.read_text(errors="replace")[-chars:] if self.logfile.exists() else ""

    def _status_kb(self, field: str) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"{field} missing from /proc/{self.proc.pid}/status")

    def pids(self) -> list[int]:
        """The server process and its children (a server that forks workers, like granian, is counted whole)."""
        assert self.proc is not None
        with contextlib.suppress(psutil.Error):
            return [self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children(recursive=True))]
        return [self.proc.pid]

    def memory(self) -> dict[str, Any]:
        """Peak (VmHWM) and current resident set size of the server process, in MB."""
        assert self.proc is not None
        process = psutil.Process(self.proc.pid)
        return {
            "pid_cmdline": " ".join(process.cmdline())[:160],
            "cpu_affinity": process.cpu_affinity(),
            "peak_rss_mb": round(self._status_kb("VmHWM") / 1024, 1),
            "rss_mb": round(process.memory_info().rss / 2**20, 1),
            "children": len(process.children(recursive=True)),
        }

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Service:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_env(pg: EmbeddedPostgres, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": pg.url, "RATE_LIMIT_MAX": "100000000", "LOG_LEVEL": "INFO", "HOST": "127.0.0.1",
            **extra}


# Load


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """One bounded run of bench.load in its own process on LOAD_CORE; its JSON result."""
    bound = float(spec.get("warmup_s", 2)) + float(spec.get("duration_s", 10)) + 60
    result = subprocess.run(
        pinned(LOAD_CORE, [sys.executable, "-m", "bench.load", "-"]), input=json.dumps(spec), cwd=ROOT,
        capture_output=True, text=True, timeout=bound, check=False,
    )
    try:
        figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"load generator failed: {result.stderr.strip()[-2000:]}") from exc
    if "error" in figures:
        raise RuntimeError(f"load generator: {figures['error']}")
    return figures


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    seen: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            seen[pid] = times.user + times.system
    return seen


def _postgres_pids(pg: EmbeddedPostgres) -> list[int]:
    pid = pg.running_pid()
    if pid is None:
        return []
    with contextlib.suppress(psutil.Error):
        return [pid, *(child.pid for child in psutil.Process(pid).children())]
    return [pid]


def measured_load(spec: dict[str, Any], service: Service, pg: EmbeddedPostgres) -> dict[str, Any]:
    """run_load, plus how much CPU the server and PostgreSQL got meanwhile (in cores, averaged over the run).

    On a shared machine this tells whether the pinned server had its core to itself: `server_cores` well
    below 1 while the server is the bottleneck means other work took part of core 0.
    """
    assert service.proc is not None
    pg_before = _cpu_seconds(_postgres_pids(pg))
    server_before = _cpu_seconds(service.pids())
    started = time.monotonic()
    figures = run_load(spec)
    wall = time.monotonic() - started
    server_after = _cpu_seconds(service.pids())
    pg_after = _cpu_seconds(_postgres_pids(pg))
    server = sum(server_after.values()) - sum(server_before.values())
    postgres = sum(t - pg_before.get(pid, 0.0) for pid, t in pg_after.items())
    figures["server_cores"] = round(server / wall, 2)
    figures["postgres_cores"] = round(postgres / wall, 2)
    return figures


def repeat(times: int, label: str, one: Callable[[int], dict[str, Any]],
           score: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    """Run `one` several times and keep the best (highest `score`); every run's score is kept as `runs`."""
    runs: list[dict[str, Any]] = []
    for attempt in range(times):
        figures = one(attempt)
        lat = figures.get("latency_ms", {})
        log(f"{label} run {attempt + 1}/{times}: {figures.get('throughput_rps', figures.get('achieved_rps'))} req/s, "
            f"{figures.get('marked_per_s', '-')} stored/s, p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
            f"server {figures.get('server_cores')} cores, PostgreSQL {figures.get('postgres_cores')} cores")
        runs.append(figures)
    best = max(runs, key=score)
    return {**best, "runs": [round(score(r), 1) for r in runs]}


def throughput(figures: dict[str, Any]) -> float:
    return float(figures["throughput_rps"])


def low_p99(figures: dict[str, Any]) -> float:
    # For latency runs the best one is the least disturbed: the lowest p99. Negated so that higher is better.
    p99 = figures["latency_ms"]["p99"]
    return -float(p99) if p99 is not None else float("-inf")


def run_info(figures: dict[str, Any], latency: bool = False) -> dict[str, Any]:
    """The spread over the runs (p99 in ms for latency runs) and the CPU the best run got, for a summary row."""
    runs = [-r for r in figures["runs"]] if latency else figures["runs"]
    return {"runs": runs, "cores": [figures.get("server_cores"), figures.get("postgres_cores")]}


def comparison(metric: str, unit: str, measured: float | None, old: float | None, target: float | None,
               better: str) -> dict[str, Any]:
    """One row of the summary: `better` is "higher" or "lower"; ratios are measured / old."""
    met: bool | None = None
    if measured is not None and target is not None:
        met = measured >= target if better == "higher" else measured < target
    ratio = round(measured / old, 2) if measured is not None and old else None
    return {"metric": metric, "unit": unit, "measured": measured, "old_nodejs": old, "target": target,
            "better": better, "ratio_vs_old": ratio, "target_met": met}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_summary()
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int | float):
        return f"{int(value):,}"
    return str(value)


def write_summary() -> None:
    """bench/results/SUMMARY.md from whichever result files exist."""
    lines = ["# Benchmark summary", "",
             "Generated by `python -m bench.bench_workspace` and `python -m bench.bench_ingest`; see "
             "`bench/README.md` for what is measured and how to read it. Server pinned to core "
             f"{SERVER_CORE} (`taskset`), load generator on core {LOAD_CORE}, embedded PostgreSQL (fsync on) "
             "unpinned. Old figures: the Node.js services, measured the same way on this kind of machine.", ""]
    for name, title in (("workspace", "Workspace API"), ("ingest", "TP Capital ingest")):
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        machine = data["machine"]
        lines += [f"## {title}", "",
                  f"{machine['date']} · {machine['cpu']} · {machine['cores']} cores · Linux {machine['kernel']} · "
                  f"Python {machine['python']} · PostgreSQL {data['postgres']['server_version']} · "
                  f"load average at start {machine['loadavg_at_start']}", "",
                  "| metric | ours | old (Node.js) | ours / old | target | met | runs | server / PostgreSQL CPU |",
                  "|---|---:|---:|---:|---:|:---:|---|---|"]
        for row in data["comparison"]:
            op = "≥" if row["better"] == "higher" else "<"
            target = f"{op} {_fmt(row['target'])}" if row["target"] is not None else "—"
            runs = ", ".join(_fmt(r) for r in row.get("runs", []))
            cpu = row.get("cores") or [None, None]
            cores = f"{cpu[0]:.2f} / {cpu[1]:.2f} cores" if None not in cpu else ""
            lines.append(f"| {row['metric']} ({row['unit']}) | {_fmt(row['measured'])} | {_fmt(row['old_nodejs'])} "
                         f"| {_fmt(row['ratio_vs_old'])} | {target} | {_fmt(row['target_met'])} | {runs} | {cores} |")
        lines += [""]
        lines += [f"- {note}" for note in data.get("notes", [])]
        lines += [""]
    lines += [f"_{READING_NOTE}_", ""]
    (RESULTS / "SUMMARY.md").write_text("\n".join(lines), encoding="utf-8")
