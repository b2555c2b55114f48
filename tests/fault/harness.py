"""The fault suite's parts: real service processes, generated exports, database counts and the results table."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support.servers import ProcessServer, tradingsystem_argv, wait_until
from tradingsystem.core.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
N = 20_000  # unique messages per case (issue 14)
RECORD_VARIABLE = "TRADINGSYSTEM_RECORD_RELIABILITY"
RESULTS = ROOT / "bench" / "results" / "reliability.md"
SCRATCH = ROOT / "var" / "reliability" / "reliability.md"

# The secrets every service of the suite is given; case 8 searches every log line for each of them.
GATEWAY_TOKEN = "fault-gateway-token-3f9c1e7a5b2d"
NEXT_TOKEN = "fault-gateway-next-8d2e6b4c1a9f"  # a second accepted token: rotation is in the list
BOT_TOKEN = "918273645:AAFaultSuiteBotTokenThatNeverReachesALog"
DB_PASSWORD = "fault-db-password-Qm7Rk2Zp"
DB_ROLE = "fault_suite"
# A Telethon session string (what an operator might keep in TELEGRAM_SESSION_STRING): every service has it in
# its environment, and it must never be logged either.
SESSION_STRING = "1BJWap1sBu" + base64.urlsafe_b64encode(bytes((i * 7 + 3) % 256 for i in range(262))).decode()

# The environment a service must not inherit from the runner (it would point it elsewhere).
_ISOLATED_PREFIXES = ("TELEGRAM_", "GATEWAY_", "API_", "FAILURE_QUEUE_", "MAX_RETRIES", "BASE_RETRY", "TIMESCALEDB_",
                      "RATE_LIMIT", "REPLAY_", "DATABASE_URL", "WORKSPACE_", "TP_CAPITAL_", "LOG_LEVEL")

TEXTS = (
    "Ativo: PETR4\nCompra: 38,50 a 38,70\nAlvo 1: 40,00\nStop: 37,00",
    "Bom dia, pessoal! Mercado abrindo.",
    "VALE3 ALVO 1 ATINGIDO ✅ +3,9%",
    "Fiquem atentos às entradas de hoje.",
)


def service_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ISOLATED_PREFIXES)}
    env["TELEGRAM_SESSION_STRING"] = SESSION_STRING
    env.update(values)
    return env


def channel_id(number: int) -> str:
    return f"-100{number}"


def write_export(path: Path, number: int, count: int, first_id: int = 1) -> Path:
    """A Telegram Desktop export of channel `-100<number>` with `count` messages, ids from `first_id`."""
    start = 1_760_000_000
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"name": f"Fault {number}", "type": "public_channel", "id": number})[:-1])
        fh.write(', "messages": [\n')
        for i in range(count):
            message_id = first_id + i
            if i:
                fh.write(",\n")
            fh.write(json.dumps({"id": message_id, "type": "message", "date_unixtime": str(start + message_id),
                                 "text": f"{TEXTS[message_id % len(TEXTS)]} #{message_id}"}, ensure_ascii=False))
        fh.write("\n]}\n")
    return path


def payloads(number: int, ids: range) -> list[dict[str, Any]]:
    """Ingest payloads as the gateway journals them (for seeding a journal or a failure queue)."""
    # each message its own time, one second apart, as in the exports `write_export` writes
    return [{"channelId": channel_id(number), "messageId": i,
             "timestamp": datetime.fromtimestamp(1_760_000_000 + i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "text": f"{TEXTS[i % len(TEXTS)]} #{i}", "kind": "new", "editDate": None, "photos": [],
             "source": "bot", "chatTitle": "Fault", "forwardedFrom": None} for i in ids]


@dataclass
class Counts:
    rows: int
    distinct: int

    @property
    def duplicated(self) -> int:
        return self.rows - self.distinct


def count_rows(database_url: str, channel: str) -> Counts:
    """Rows stored for `channel` and distinct message ids among them, straight from tp_capital.messages."""

    async def run() -> Counts:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) AS rows, count(DISTINCT message_id) AS distinct_ids"
                " FROM tp_capital.messages WHERE channel_id = $1", channel)
        finally:
            await conn.close()
        assert row is not None
        return Counts(int(row["rows"]), int(row["distinct_ids"]))

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return Counts(-1, -1)  # the database is away (case 3): callers poll


def stored(database_url: str, channel: str) -> int:
    return count_rows(database_url, channel).distinct


class Services:
    """Starts the real services as subprocesses; every log file lands in one directory (case 8 reads them)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ProcessServer] = []
        self.commands: list[subprocess.Popen[bytes]] = []

    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}-{len(list(self.log_dir.iterdir()))}.log"

    def api(self, database_url: str, *, gateway_url: str | None = None, port: int | None = None,
            name: str = "api") -> ProcessServer:
        port = port or free_port()
        env = service_env(DATABASE_URL=database_url, API_PORT=str(port),
                          GATEWAY_SECRET_TOKEN=f"{GATEWAY_TOKEN},{NEXT_TOKEN}", RATE_LIMIT_MAX="100000000",
                          GATEWAY_URL=gateway_url or f"http://127.0.0.1:{free_port()}")
        server = ProcessServer(tradingsystem_argv("serve", "api"), env, port, self._log(name), cwd=self.log_dir)
        server.env = env
        self.started.append(server.start())
        return server

    def workspace(self, database_url: str, name: str = "workspace") -> ProcessServer:
        port = free_port()
        env = service_env(DATABASE_URL=database_url, WORKSPACE_PORT=str(port), RATE_LIMIT_MAX="100000000")
        server = ProcessServer(tradingsystem_argv("serve", "workspace"), env, port, self._log(name),
                               cwd=self.log_dir)
        server.env = env
        self.started.append(server.start())
        return server

    def gateway(self, data_dir: Path, api_url: str, *, port: int | None = None, name: str = "gateway",
                **extra: str) -> ProcessServer:
        port = port or free_port()
        values = {"GATEWAY_PORT": str(port), "GATEWAY_DATA_DIR": str(data_dir), "API_ENDPOINT": f"{api_url}/ingest",
                  "GATEWAY_SECRET_TOKEN": GATEWAY_TOKEN, "BASE_RETRY_DELAY_MS": "50", "API_TIMEOUT_MS": "5000",
                  "REPLAY_INTERVAL_MS": "0", **extra}
        env = service_env(**values)
        server = ProcessServer(tradingsystem_argv("serve", "gateway"), env, port, self._log(name), cwd=self.log_dir)
        server.env = env
        self.started.append(server.start())
        return server

    def command(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        """A CLI command (`gateway import …`) with its output in the log directory."""
        with self._log(name).open("ab") as log:  # the child has its own copy of the descriptor
            proc = subprocess.Popen(tradingsystem_argv(*args), env=service_env(**env), cwd=self.log_dir,
                                    stdout=log, stderr=subprocess.STDOUT)
        self.commands.append(proc)
        return proc

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
        for proc in self.commands:  # a command a failed or interrupted case left running
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def kill9(server: ProcessServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(30)
    server.stop()


def health(server: ProcessServer) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(server.url + "/health", timeout=10, trust_env=False).json()
    return body


def metric(server: ProcessServer, name: str) -> float:
    """The value of one sample (`name` with its labels, as exposed) on the server's /metrics."""
    for line in httpx.get(server.url + "/metrics", timeout=10, trust_env=False).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name} on {server.url}/metrics")


def wait_stored(database_url: str, channel: str, expected: int, timeout: float, message: str) -> float:
    """Poll until `expected` distinct messages of `channel` are stored; returns the seconds it took."""
    started = time.monotonic()
    wait_until(lambda: stored(database_url, channel) >= expected, timeout, interval=0.2, message=message)
    return time.monotonic() - started


# -- the results table ---------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    sent: int
    stored: int
    lost: int
    duplicated: int
    seconds: float | None
    seconds_label: str
    note: str = ""
    unit: str = ""  # a row that counts something else than messages: requests, log lines


@dataclass
class Ledger:
    """Each case adds one row; at the end of the run the table is written (scratch, or bench/results when
    TRADINGSYSTEM_RECORD_RELIABILITY=1)."""

    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    load_at_start: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def add(self, case: str, *, sent: int, counts: Counts, seconds: float | None, seconds_label: str,
            expected: int | None = None, note: str = "") -> Row:
        expected = sent if expected is None else expected
        row = Row(case, sent, counts.distinct, max(0, expected - counts.distinct), counts.duplicated, seconds,
                  seconds_label, note)
        self.rows.append(row)
        took = f"{seconds:.1f} s" if seconds is not None else "-"
        print(f"\n[fault] {case}: sent {sent}  stored {row.stored}  lost {row.lost}  duplicated {row.duplicated}"
              f"  {seconds_label} {took}{'  ' + note if note else ''}")
        return row

    @staticmethod
    def target() -> Path:
        return RESULTS if os.environ.get(RECORD_VARIABLE) == "1" else SCRATCH

    def write(self) -> Path:
        path = self.target()
        path.parent.mkdir(parents=True, exist_ok=True)
        uname = platform.uname()
        lines = [
            "# Reliability: the delivery guarantee under faults",
            "",
            "Written by the fault suite (`tests/fault/`, marker `fault`): "
            f"`{RECORD_VARIABLE}=1 pytest -m fault` (or `make reliability-record`) rewrites this file; a plain "
            "`pytest` run writes the same table to `var/reliability/reliability.md`. What each case does: "
            "[docs/gateway-delivery.md](../../docs/gateway-delivery.md#the-fault-suite).",
            "",
            f"- date: {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
            f"- machine: {uname.system} {uname.release} {uname.machine}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            f"- load average at start {[round(x, 2) for x in self.load_at_start]}, at end "
            f"{[round(x, 2) for x in os.getloadavg()]}: the machine "
            "is shared with other engineers' test runs, so times are what a busy 2-core machine gives",
            f"- suite wall clock: {time.monotonic() - self.started:.0f} s",
            "",
            "Lost = sent by the source (or acknowledged to it) and never stored in `tp_capital.messages`; "
            "duplicated = rows beyond one per (channel, message id), counted in the database with SQL.",
            "",
            "| case | sent | stored | lost | duplicated | time | note |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        for r in self.rows:
            took = f"{r.seconds_label} {r.seconds:.1f} s" if r.seconds is not None else "-"
            if r.unit:
                lines.append(f"| {r.case} | {r.sent:,} {r.unit} | - | - | - | - | {r.note} |")
            else:
                lines.append(f"| {r.case} | {r.sent:,} | {r.stored:,} | {r.lost:,} | {r.duplicated:,} | {took} | "
                             f"{r.note} |")
        path.write_text("\n".join(lines) + "\n")
        return path


def stored_ids(database_url: str, channel: str) -> set[int]:
    async def run() -> set[int]:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            rows = await conn.fetch("SELECT message_id FROM tp_capital.messages WHERE channel_id = $1", channel)
        finally:
            await conn.close()
        return {int(r["message_id"]) for r in rows}

    return asyncio.run(run())


def journaled_ids(data_dir: Path, channel: str) -> set[int]:
    """The message ids the gateway's journal holds (each was acknowledged to its source), read from a copy of
    the files a killed gateway left."""
    import shutil
    import sqlite3
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            source = data_dir / f"journal.db{suffix}"
            if source.exists():
                shutil.copyfile(source, Path(tmp) / f"journal.db{suffix}")
        conn = sqlite3.connect(Path(tmp) / "journal.db")
        try:
            return {int(r[0]) for r in conn.execute("SELECT message_id FROM entries WHERE channel_id = ?",
                                                     (channel,))}
        finally:
            conn.close()


def note_row(ledger: Ledger, case: str, count: int, unit: str, note: str) -> None:
    """A row that counts something else than messages (fuzzing and token requests, log lines searched)."""
    ledger.rows.append(Row(case, count, 0, 0, 0, None, "", note, unit=unit))
    print(f"\n[fault] {case}: {count} {unit}  {note}")
