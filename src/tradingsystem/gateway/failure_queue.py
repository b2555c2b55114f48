"""Failure queue: JSON Lines of messages the API did not take, appended whole and fsync'd, replayed on demand."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from tradingsystem.core.timeutil import iso_ms
from tradingsystem.gateway.files import FILE_MODE, fsync_dir, private_dir, private_file
from tradingsystem.gateway.types import IngestPayload

log = structlog.get_logger(__name__)

QUEUE_FIELDS = ("failedAt", "attempts", "lastError")
# lastError of a message the API refused as invalid: re-sending it unchanged cannot succeed, so the
# automatic re-drive leaves it for an operator (`gateway queue replay` still tries every line).
REJECTED_PREFIX = "rejected by API: "
# A replay sends `/ingest/batch` requests of at most the API's 1000 messages and about 4 MiB (the API
# takes 8 MiB per batch body; queue lines are a little larger than the payloads they carry).
REPLAY_BATCH_MAX = 1000
REPLAY_BATCH_BYTES = 4 * 1024 * 1024


class QueueFullError(Exception):
    """Appending would take the queue past FAILURE_QUEUE_MAX_BYTES; the message must stay in the journal."""


@dataclass(frozen=True, slots=True)
class QueueStatus:
    lines: int
    bytes: int
    oldest_failed_at: str | None


@dataclass(frozen=True, slots=True)
class QueueLine:
    offset: int
    raw: bytes
    record: dict[str, Any] | None  # None when no queue record could be read from the line
    # The bytes of the line that are not a record: all of it, or a torn prefix that an older version
    # glued a whole line onto. A replay moves them to the corrupt sidecar file.
    garbage: bytes = b""

    @property
    def payload(self) -> IngestPayload:
        assert self.record is not None
        return {k: v for k, v in self.record.items() if k not in QUEUE_FIELDS}

    @property
    def permanent(self) -> bool:
        return self.record is not None and str(self.record.get("lastError", "")).startswith(REJECTED_PREFIX)


@dataclass(slots=True)
class ReplayOutcome:
    """What one send of a queued payload achieved; `unreachable` stops the replay (the API is down)."""

    delivered: bool
    error: str | None = None
    unreachable: bool = False


@dataclass(slots=True)
class ReplayReport:
    delivered: int = 0
    failed: int = 0
    remaining: int = 0
    unreachable: bool = False
    corrupt: int = 0  # unreadable lines moved to the sidecar file
    errors: list[str] = field(default_factory=list)


def _parse_line(raw: bytes) -> tuple[dict[str, Any] | None, bytes]:
    """The record a line holds and the bytes that are not part of it.

    A line that is not a JSON object may still end in a whole record (a torn tail with the next line
    appended onto it): the longest such suffix that is a queue record is recovered."""
    body = raw.rstrip(b"\n")
    try:
        record = json.loads(body)
    except ValueError:
        record = None
    if isinstance(record, dict):
        return record, b""
    start = body.find(b"{", 1)
    while start > 0:
        try:
            candidate = json.loads(body[start:])
        except ValueError:
            candidate = None
        if isinstance(candidate, dict) and "channelId" in candidate and "messageId" in candidate:
            return candidate, body[:start]
        start = body.find(b"{", start + 1)
    return None, body


class FailureQueue:
    """The queue file plus two lock files: `<file>.lock` guards appends/rewrites, `<file>.replay.lock`
    lets only one process (the service or the CLI) replay at a time."""

    def __init__(self, path: Path, max_bytes: int, warn_bytes: int,
                 on_corrupt: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.warn_bytes = warn_bytes
        self.on_corrupt = on_corrupt  # called with the number of lines set aside (the service's metric)
        self._lock_path = path.with_name(path.name + ".lock")
        self._replay_lock_path = path.with_name(path.name + ".replay.lock")
        self._thread_lock = threading.Lock()
        self._count_cache: tuple[tuple[int, int, int], int, str | None] | None = None
        self._corrupt_cache: tuple[tuple[tuple[str, int, int], ...], int] | None = None
        self._warned = False

    # -- locking ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self, lock_path: Path, blocking: bool = True) -> Iterator[bool]:
        private_dir(lock_path.parent)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _append_lock(self) -> Iterator[None]:
        with self._thread_lock, self._file_lock(self._lock_path):
            yield

    # -- status ----------------------------------------------------------------------------------------

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def status(self) -> QueueStatus:
        """Lines, bytes and the oldest `failedAt`; the line count is cached per (inode, size, mtime)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return QueueStatus(0, 0, None)
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._count_cache is not None and self._count_cache[0] == key:
            return QueueStatus(self._count_cache[1], st.st_size, self._count_cache[2])
        lines = 0
        oldest: str | None = None
        for line in self.read_lines():
            lines += 1
            if line.record is not None:
                failed_at = line.record.get("failedAt")
                if isinstance(failed_at, str) and (oldest is None or failed_at < oldest):
                    oldest = failed_at
        self._count_cache = (key, lines, oldest)
        return QueueStatus(lines, st.st_size, oldest)

    def corrupt_files(self) -> list[Path]:
        return sorted(self.path.parent.glob(self.path.name + ".corrupt-*"))

    def corrupt_lines(self) -> int:
        """Unreadable lines set aside in the sidecar files (until an operator removes them)."""
        files = self.corrupt_files()
        key = tuple((f.name, st.st_size, st.st_mtime_ns) for f in files if (st := f.stat()))
        if self._corrupt_cache is not None and self._corrupt_cache[0] == key:
            return self._corrupt_cache[1]
        count = 0
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                count += f.read_bytes().count(b"\n")
        self._corrupt_cache = (key, count)
        return count

    @property
    def over_warning(self) -> bool:
        return self.size() > self.warn_bytes

    def holds_only_refused(self) -> bool:
        """True when no whole line is left for a re-drive: each one is a message the API refused as invalid."""
        return all(line.record is None or line.permanent for line in self.read_lines())

    def read_lines(self, limit_bytes: int | None = None, start: int = 0) -> Generator[QueueLine]:
        """Every complete line from byte `start` (up to `limit_bytes` of the file), with its byte offset."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            fh.seek(start)
            offset = start
            for raw in fh:
                if limit_bytes is not None and offset >= limit_bytes:
                    break
                if not raw.endswith(b"\n"):
                    break  # a torn tail: `repair_tail` sets it aside before the next append
                record, garbage = _parse_line(raw)
                yield QueueLine(offset, raw, record, garbage)
                offset += len(raw)

    # -- corrupt lines ---------------------------------------------------------------------------------

    def _set_aside(self, pieces: list[bytes], reason: str) -> None:
        """Append unreadable bytes, one line each, to today's sidecar file (0600, fsync'd) and report it."""
        if not pieces:
            return
        sidecar = self.path.with_name(f"{self.path.name}.corrupt-{datetime.now(UTC).strftime('%Y%m%d')}")
        data = b"".join(p.rstrip(b"\n") + b"\n" for p in pieces)
        fd = os.open(sidecar, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(sidecar.parent)
        log.error("Failure queue lines unreadable, set aside", path=str(self.path), moved_to=str(sidecar),
                  lines=len(pieces), reason=reason)
        if self.on_corrupt is not None:
            self.on_corrupt(len(pieces))

    def _repair_tail_locked(self, fd: int) -> int:
        """With the append lock held: a file not ending in a newline has a torn tail (writers only ever
        add whole lines under this lock). Move the tail to the sidecar and cut it off; returns the size."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        start = size
        step = 65536
        while start > 0:
            lo = max(0, start - step)
            chunk = os.pread(fd, start - lo, lo)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = lo + cut + 1
                break
            start = lo
        tail = os.pread(fd, size - start, start)
        self._set_aside([tail], "torn last line (no newline at the end of the file)")
        os.ftruncate(fd, start)
        os.fsync(fd)
        return start

    def repair_tail(self) -> None:
        """Set a torn last line aside now (the service calls it at start, replays before reading); files
        an older version left readable by others are tightened to 0600 on the way."""
        with self._append_lock():
            for path in (self.path, self._lock_path, self._replay_lock_path, *self.corrupt_files()):
                private_file(path)
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                return
            try:
                self._repair_tail_locked(fd)
            finally:
                os.close(fd)

    # -- append ----------------------------------------------------------------------------------------

    @staticmethod
    def encode(payload: IngestPayload, attempts: int, last_error: str, failed_at: str | None = None) -> bytes:
        record = {k: v for k, v in payload.items() if k not in QUEUE_FIELDS}
        record.update({"failedAt": failed_at or iso_ms(), "attempts": attempts, "lastError": last_error})
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def append(self, payload: IngestPayload, attempts: int, last_error: str) -> int:
        """Append one whole line, fsync'd; returns the new size. Raises QueueFullError at the cap."""
        line = self.encode(payload, attempts, last_error)
        with self._append_lock():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                before = self._repair_tail_locked(fd)
                if before + len(line) > self.max_bytes:
                    raise QueueFullError(
                        f"failure queue at {before} bytes, cap {self.max_bytes}: message stays in the journal"
                    )
                try:
                    written = os.write(fd, line)
                    if written != len(line):
                        raise OSError(f"short write to failure queue ({written} of {len(line)} bytes)")
                    os.fsync(fd)
                except OSError:
                    # never leave half a line behind: a reader must only ever see whole lines
                    os.ftruncate(fd, before)
                    raise
                size = before + len(line)
            finally:
                os.close(fd)
        self._check_warning(size)
        return size

    def _check_warning(self, size: int) -> None:
        if size > self.warn_bytes and not self._warned:
            self._warned = True
            log.warning("Failure queue over warning size", path=str(self.path), bytes=size,
                        warn_bytes=self.warn_bytes, max_bytes=self.max_bytes)
        elif size <= self.warn_bytes:
            self._warned = False

    # -- replay ----------------------------------------------------------------------------------------

    def _rewrite(self, snapshot_end: int, delivered: set[int], updated: dict[int, bytes],
                 garbage: list[bytes] | None = None) -> None:
        """Atomically replace the file, dropping delivered lines of the snapshot and keeping later appends.

        `garbage` (unreadable bytes of the snapshot's lines) goes to the sidecar file first, so that a
        crash in between leaves it in both places, never in neither."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with self._append_lock():
            self._set_aside(garbage or [], "not a queue record")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with self.path.open("rb") as src, os.fdopen(fd, "wb") as dst:
                offset = 0
                for raw in src:
                    if offset < snapshot_end and offset in delivered:
                        pass
                    elif offset < snapshot_end and offset in updated:
                        dst.write(updated[offset])
                    else:
                        dst.write(raw)
                    offset += len(raw)
                dst.flush()
                os.fsync(dst.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        self._check_warning(self.size())

    async def replay(
        self,
        send: Callable[[list[IngestPayload]], Awaitable[list[ReplayOutcome]]],
        *,
        include_permanent: bool = True,
        rewrite_every_s: float = 2.0,
        progress: Callable[[int, int], None] | None = None,
        batch_max: int = REPLAY_BATCH_MAX,
        batch_bytes: int = REPLAY_BATCH_BYTES,
    ) -> ReplayReport:
        """Re-send the queued lines in order, in batches, and remove only the delivered ones.

        `send` gets up to `batch_max` payloads (and about `batch_bytes` of lines) and answers one outcome
        per payload. The file is rewritten (atomically) at most every `rewrite_every_s` seconds and at the
        end, so a crash in the middle re-sends at most those seconds' worth of delivered lines (the API
        drops duplicates). Lines appended while replaying are left for the next run. Stops after a batch
        with an `unreachable` outcome; `remaining` in the report is the line count afterwards.
        """
        report = ReplayReport()
        with self._file_lock(self._replay_lock_path, blocking=False) as locked:
            if not locked:
                report.remaining = self.status().lines
                report.unreachable = False
                report.errors.append("another replay is already running")
                return report
            self.repair_tail()
            total = self.status().lines
            tried = 0
            kept_bytes = 0  # the tried-and-kept lines sit at the front of the file, in their order
            stop = False
            while tried < total and not stop:
                snapshot_end = self.size()
                delivered: set[int] = set()
                updated: dict[int, bytes] = {}
                garbage: list[bytes] = []
                last_rewrite = time.monotonic()
                lines = self.read_lines(snapshot_end, start=kept_bytes)
                while True:
                    batch: list[QueueLine] = []
                    size = 0
                    for line in lines:
                        tried += 1
                        if line.garbage:
                            garbage.append(line.garbage)
                            report.corrupt += 1
                            if line.record is None:
                                delivered.add(line.offset)  # gone from the queue, kept in the sidecar
                            else:  # a whole record glued onto a torn tail: it stays, on its own line
                                updated[line.offset] = self.encode(
                                    line.payload, int(line.record.get("attempts", 0)),
                                    str(line.record.get("lastError", "")),
                                    str(line.record.get("failedAt") or iso_ms()))
                        if line.record is None:
                            pass
                        elif line.permanent and not include_permanent:
                            kept_bytes += len(updated.get(line.offset, line.raw))
                        else:
                            batch.append(line)
                            size += len(line.raw)
                        if tried >= total or len(batch) >= batch_max or size >= batch_bytes:
                            break
                    else:
                        stop = True  # the file ran out of lines (somebody else emptied it)
                    if batch:
                        outcomes = await send([line.payload for line in batch])
                        for line, outcome in zip(batch, outcomes, strict=True):
                            if outcome.delivered:
                                delivered.add(line.offset)
                                report.delivered += 1
                                continue
                            report.failed += 1
                            error = outcome.error or "unknown error"
                            if error not in report.errors:
                                report.errors.append(error)
                            record = line.record
                            assert record is not None
                            new = self.encode(line.payload, int(record.get("attempts", 0)) + 1, error,
                                              str(record.get("failedAt") or iso_ms()))
                            updated[line.offset] = new
                            kept_bytes += len(new)
                            if outcome.unreachable:
                                report.unreachable = True
                                stop = True
                    if progress:
                        progress(tried, total)
                    if stop or tried >= total or time.monotonic() - last_rewrite >= rewrite_every_s:
                        break
                lines.close()
                if delivered or updated or garbage:
                    self._rewrite(snapshot_end, delivered, updated, garbage)
        report.remaining = self.status().lines
        if report.delivered:
            log.info("Failure queue replayed", delivered=report.delivered, remaining=report.remaining)
        return report
