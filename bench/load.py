"""A lean HTTP/1.1 load generator for loopback benchmarks: closed-loop throughput and open-loop fixed-rate latency.

Raw asyncio protocols with keep-alive connections (no HTTP client library in the hot path), so that one core
of load can saturate one core of server. Two modes:

- ``closed``: ``concurrency`` connections, each sends its next request as soon as the previous answer
  arrived. Measures throughput (responses completed per second inside the measuring window).
- ``open``: requests are due on a fixed schedule (``rate`` per second) whatever the server does. Latency is
  counted from the time a request was *due*, not from when it could be sent, so a stalled server shows up
  in the percentiles instead of silently slowing the generator down (coordinated omission).

Every run is bounded by ``warmup_s + duration_s`` plus a drain timeout and by ``max_requests``. Only loopback
addresses are accepted. Run as ``python -m bench.load SPEC.json`` (``-`` reads stdin); prints one JSON result.

Request templates may contain ``{seq}`` (a number unique to each request, from ``seq_start``), ``{now}`` (the
current UTC time, ISO 8601 with microseconds) and ``{pick:NAME}`` (a random element of ``picks[NAME]``, inserted
verbatim) in the path and the body.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_SLOT = re.compile(r"\{(seq|now|pick:[A-Za-z0-9_]+)\}")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)
CONNECT_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 5.0


class LoadError(RuntimeError):
    """The run could not be carried out (bad spec, refused connection, unparseable answer)."""


class Template:
    """A string with ``{seq}``/``{now}``/``{pick:NAME}`` slots, pre-split so that rendering is one join."""

    def __init__(self, text: str, picks: dict[str, list[str]]) -> None:
        self.parts: list[str] = []
        self.slots: list[str | list[str]] = []  # "seq", "now", or the list to pick from
        pos = 0
        for match in _SLOT.finditer(text):
            self.parts.append(text[pos:match.start()])
            name = match.group(1)
            if name in ("seq", "now"):
                self.slots.append(name)
            else:
                key = name.split(":", 1)[1]
                if not picks.get(key):
                    raise LoadError(f"template uses {{pick:{key}}} but picks[{key!r}] is empty")
                self.slots.append(picks[key])
            pos = match.end()
        self.tail = text[pos:]
        self.static = not self.slots

    def render(self, seq: int, rnd: Callable[[list[str]], str]) -> str:
        if self.static:
            return self.tail
        seq_text = str(seq)
        out: list[str] = []
        for part, slot in zip(self.parts, self.slots, strict=True):
            out.append(part)
            if slot == "seq":
                out.append(seq_text)
            elif slot == "now":
                out.append(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            else:
                out.append(rnd(slot))  # type: ignore[arg-type]
        out.append(self.tail)
        return "".join(out)


@dataclass
class Spec:
    """What to send, to where, how hard and for how long."""

    port: int
    mode: str = "closed"
    host: str = "127.0.0.1"
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    picks: dict[str, list[str]] = field(default_factory=dict)
    concurrency: int = 32
    rate: float = 0.0
    warmup_s: float = 2.0
    duration_s: float = 10.0
    max_requests: int = 2_000_000
    seq_start: int = 1
    expect_status: list[int] = field(default_factory=lambda: [200])
    marker: str | None = None  # count this text in the expected answers (e.g. '"stored":true' per new message)
    seed: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spec:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise LoadError(f"unknown spec fields: {sorted(unknown)}")
        spec = cls(**data)
        spec.check()
        return spec

    def check(self) -> None:
        if self.host not in LOOPBACK:
            raise LoadError(f"refusing to load {self.host}: only loopback targets are allowed")
        if self.mode not in ("closed", "open"):
            raise LoadError("mode must be 'closed' or 'open'")
        if self.mode == "open" and self.rate <= 0:
            raise LoadError("open mode needs a positive rate")
        if self.concurrency < 1 or self.duration_s <= 0 or self.duration_s > 120 or self.warmup_s < 0:
            raise LoadError("concurrency >= 1 and 0 < duration_s <= 120 are required")


class RequestFactory:
    """Turns a sequence number into the bytes of one HTTP/1.1 request."""

    def __init__(self, spec: Spec) -> None:
        self.path = Template(spec.path, spec.picks)
        self.body = Template(spec.body, spec.picks) if spec.body is not None else None
        lines = [f"{k}: {v}" for k, v in spec.headers.items()]
        lines.append(f"Host: {spec.host}:{spec.port}")
        if self.body is not None and not any(k.lower() == "content-type" for k in spec.headers):
            lines.append("Content-Type: application/json")
        self.head_prefix = f"{spec.method} "
        self.head_suffix = " HTTP/1.1\r\n" + "".join(line + "\r\n" for line in lines)
        self.rnd = random.Random(spec.seed).choice
        self.cached: bytes | None = None
        if self.path.static and (self.body is None or self.body.static):
            self.cached = self._build(0)

    def _build(self, seq: int) -> bytes:
        head = self.head_prefix + self.path.render(seq, self.rnd) + self.head_suffix
        if self.body is None:
            return (head + "\r\n").encode()
        body = self.body.render(seq, self.rnd).encode()
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def __call__(self, seq: int) -> bytes:
        return self.cached if self.cached is not None else self._build(seq)


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body_start = -1
        self.body_len = 0
        self.status = 0
        self.closing = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, they only behave like one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.body_start < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            try:
                self.status = int(head[9:12])
            except ValueError:
                self._fail(LoadError(f"unparseable status line: {head[:40]!r}"))
                return
            match = _CONTENT_LENGTH.search(head)
            if match is not None:
                self.body_len = int(match.group(1))
            elif self.status in (204, 304) or 100 <= self.status < 200:
                self.body_len = 0
            else:
                self._fail(LoadError("answer without Content-Length (chunked bodies are not supported)"))
                return
            self.closing = _CLOSE.search(head) is not None
            self.body_start = end + 4
        total = self.body_start + self.body_len
        if len(self.buf) < total:
            return
        body = bytes(self.buf[self.body_start:total])
        del self.buf[:total]
        self.body_start = -1
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.status, body))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionError("connection closed by the server"))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(Connection, host, port), CONNECT_TIMEOUT_S)
    return proto


class Recorder:
    """Latencies (seconds) and outcome counts of the requests that completed inside the measuring window."""

    def __init__(self, spec: Spec) -> None:
        self.expect = set(spec.expect_status)
        self.marker = spec.marker.encode() if spec.marker else None
        self.latencies = array("d")
        self.status: dict[int, int] = {}
        self.unexpected = 0
        self.marked = 0
        self.failures = 0
        self.sample_error: str | None = None

    def record(self, latency: float, status: int, body: bytes) -> None:
        self.latencies.append(latency)
        self.status[status] = self.status.get(status, 0) + 1
        if status not in self.expect:
            self.unexpected += 1
            if self.sample_error is None:
                self.sample_error = f"{status} {body[:200].decode(errors='replace')}"
        elif self.marker is not None:
            self.marked += body.count(self.marker)


def percentiles(values: array[float] | list[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles in milliseconds."""
    if not values:
        return {k: None for k in ("p50", "p90", "p95", "p99", "p999", "max", "mean")}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        index = min(n - 1, max(0, int(-(-p * n // 100)) - 1))
        return round(ordered[index] * 1000, 3)

    return {"p50": rank(50), "p90": rank(90), "p95": rank(95), "p99": rank(99), "p999": rank(99.9),
            "max": round(ordered[-1] * 1000, 3), "mean": round(sum(ordered) / n * 1000, 3)}


async def _closed(spec: Spec, factory: RequestFactory, rec: Recorder) -> dict[str, Any]:
    seqs = itertools.count(spec.seq_start)
    issued = 0
    clock = time.perf_counter
    start = clock()
    measure_from = start + spec.warmup_s
    measure_to = measure_from + spec.duration_s
    conns = [await connect(spec.host, spec.port) for _ in range(spec.concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal issued
        while issued < spec.max_requests:
            sent = clock()
            if sent >= measure_to:
                return
            issued += 1
            data = factory(next(seqs))
            try:
                status, body = await conn.request(data)
            except (ConnectionError, LoadError) as exc:
                rec.failures += 1
                rec.sample_error = rec.sample_error or str(exc)
                conn = await connect(spec.host, spec.port)
                continue
            done = clock()
            if measure_from <= done <= measure_to:
                rec.record(done - sent, status, body)
            if conn.closing or conn.lost:
                conn = await connect(spec.host, spec.port)

    tasks = [asyncio.ensure_future(worker(c)) for c in conns]
    _, pending = await asyncio.wait(tasks, timeout=spec.warmup_s + spec.duration_s + DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise LoadError(f"worker failed: {task.exception()!r}")
    window = min(clock(), measure_to) - measure_from
    return {"window_s": round(window, 3), "issued": issued, "unfinished": len(pending),
            "throughput_rps": round(len(rec.latencies) / window, 1) if window > 0 else 0.0}


async def _open(spec: Spec, factory: RequestFactory, rec: Recorder) -> dict[str, Any]:
    clock = time.perf_counter
    conns = [await connect(spec.host, spec.port) for _ in range(spec.concurrency)]
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    interval = 1.0 / spec.rate
    start = clock() + 0.01
    measure_from = start + spec.warmup_s
    total = min(spec.max_requests, int((spec.warmup_s + spec.duration_s) * spec.rate))
    max_backlog = 0
    done_count = 0
    last_done = measure_from

    async def dispatcher() -> None:
        nonlocal max_backlog
        for i in range(total):
            due = start + i * interval
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((spec.seq_start + i, due))
            max_backlog = max(max_backlog, queue.qsize())

    async def worker(conn: Connection) -> None:
        nonlocal done_count, last_done
        while True:
            seq, due = await queue.get()
            try:
                status, body = await conn.request(factory(seq))
            except (ConnectionError, LoadError) as exc:
                rec.failures += 1
                rec.sample_error = rec.sample_error or str(exc)
                conn = await connect(spec.host, spec.port)
                queue.task_done()
                continue
            done = clock()
            done_count += 1
            last_done = done
            # Counted from when the request was due: waiting for a free connection is part of the latency.
            if due >= measure_from:
                rec.record(done - due, status, body)
            if conn.closing or conn.lost:
                conn = await connect(spec.host, spec.port)
            queue.task_done()

    workers = [asyncio.ensure_future(worker(c)) for c in conns]
    await dispatcher()
    try:
        await asyncio.wait_for(queue.join(), DRAIN_TIMEOUT_S)
        unfinished = 0
    except TimeoutError:
        unfinished = total - done_count
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    # A server that cannot keep up finishes the window's requests late: the achieved rate shows it.
    elapsed = max(spec.duration_s, last_done - measure_from)
    measured = len(rec.latencies)
    return {"window_s": round(spec.duration_s, 3), "issued": total, "unfinished": unfinished,
            "target_rate": spec.rate, "achieved_rps": round(measured / elapsed, 1),
            "max_backlog": max_backlog}


async def run(spec: Spec) -> dict[str, Any]:
    """Carry out one bounded run and return its figures."""
    factory = RequestFactory(spec)
    rec = Recorder(spec)
    figures = await (_closed(spec, factory, rec) if spec.mode == "closed" else _open(spec, factory, rec))
    result: dict[str, Any] = {
        "mode": spec.mode,
        "method": spec.method,
        "path": spec.path,
        "concurrency": spec.concurrency,
        "warmup_s": spec.warmup_s,
        "duration_s": spec.duration_s,
        "completed": len(rec.latencies),
        **figures,
        "unexpected_status": rec.unexpected,
        "connection_failures": rec.failures,
        "status_counts": {str(k): v for k, v in sorted(rec.status.items())},
        "latency_ms": percentiles(rec.latencies),
    }
    if rec.marker is not None:
        result["marked"] = rec.marked
        result["marked_per_s"] = round(rec.marked / figures["window_s"], 1) if figures["window_s"] else 0.0
    if rec.sample_error is not None:
        result["sample_error"] = rec.sample_error
    return result


def run_sync(spec: Spec) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:  # the standard loop works too, only with more client overhead
        return asyncio.run(run(spec))
    return uvloop.run(run(spec))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.load SPEC.json|-", file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[0] == "-" else Path(argv[0]).read_text(encoding="utf-8")
    try:
        spec = Spec.from_dict(json.loads(text))
        result = run_sync(spec)
    except (LoadError, OSError, TimeoutError) as exc:
        print(json.dumps({"error": str(exc) or type(exc).__name__}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
