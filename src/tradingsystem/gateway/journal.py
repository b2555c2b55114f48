"""Durable local journal: every received message is committed to disk here before its source is acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import structlog

from tradingsystem.gateway.files import create_private, private_dir, private_file, set_aside
from tradingsystem.gateway.types import IngestPayload

log = structlog.get_logger(__name__)

# Why SQLite (WAL, synchronous=FULL) and not append-only segment files: an entry changes state after it
# is written (pending -> delivered / queued / held), and SQLite gives atomic in-place state changes, an
# index per channel for ordered reads, crash recovery of half-written transactions, and space reuse after
# pruning, all of which segment files would need a second "ack log" and a compactor to match. With
# synchronous=FULL a WAL commit is fsync'd before COMMIT returns, so `append` returning means durable.

EntryState = Literal["pending", "delivered", "queued", "held"]
WriteFailure = Literal["disk_full", "read_only", "error"]  # the reasons of telegram_journal_write_errors_total

PENDING: Final = "pending"  # waiting for the API to acknowledge it
DELIVERED: Final = "delivered"  # the API answered 200 (stored or duplicate); pruned later
QUEUED: Final = "queued"  # copied to the failure queue (fsync'd there first); pruned later
HELD: Final = "held"  # retries exhausted but the failure queue was full: kept here until there is room

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id  TEXT    NOT NULL,
    message_id  INTEGER NOT NULL,
    payload     TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    received_at REAL    NOT NULL,
    updated_at  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_state_channel ON entries (state, channel_id, seq);
"""


class JournalError(Exception):
    """A message could not be made durable; its source must not be acknowledged."""


class JournalFullError(JournalError):
    """The data directory's filesystem has no space left."""


@dataclass(frozen=True, slots=True)
class JournalRecovery:
    """A damaged journal file that `open` set aside, and how many unfinished entries it gave back."""

    moved_to: Path
    error: str
    salvaged: int
    unreadable_ranges: int


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    channel_id: str
    message_id: int
    payload: IngestPayload
    state: str
    attempts: int
    last_error: str | None
    received_at: float


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _is_read_only(exc: BaseException, directory: Path) -> bool:
    """The write failed because the filesystem is read-only (SQLite often reports only "disk I/O error")."""
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return True
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY:
        return True
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
        # a filesystem the kernel turned read-only after an error refuses writes before statvfs says so
        with tempfile.TemporaryFile(dir=directory):
            return False
    except OSError as probe:
        return probe.errno == errno.EROFS


def _write_failure(exc: BaseException, directory: Path) -> WriteFailure:
    if _is_disk_full(exc):
        return "disk_full"
    return "read_only" if _is_read_only(exc, directory) else "error"


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A file that is not (or no longer) a readable SQLite database, as opposed to one we may not open."""
    if isinstance(exc, sqlite3.OperationalError):
        return False  # locked, read-only, cannot open, disk full: nothing wrong with the file itself
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (None, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in str(exc)


def _salvage(path: Path) -> tuple[list[IngestPayload], int]:
    """The unfinished (pending and held) payloads SQLite can still read from a damaged journal, in
    sequence order, and how many unreadable ranges were skipped.

    Rows are read by rowid from the table itself (never through the index, which may be the damaged
    part); a range that cannot be read is stepped over with growing jumps."""
    found: list[IngestPayload] = []
    gaps = 0
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error:
        return found, gaps
    # A file shorter than its header says (it lost its end) is refused as a whole unless the schema is
    # "writable"; this connection only reads, and so gets every page that is still there.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA writable_schema=ON")
    select = "SELECT seq, payload, state FROM entries NOT INDEXED WHERE seq >= ? ORDER BY seq"
    try:
        position = 0
        while True:
            try:
                for seq, payload, state in conn.execute(select, (position,)):
                    position = int(seq) + 1
                    if state in (PENDING, HELD):
                        value = _payload_or_none(payload)
                        if value is not None:
                            found.append(value)
                break  # read to the end
            except sqlite3.DatabaseError:
                gaps += 1
                following = _next_readable(conn, position)
                if following is None:
                    break
                position = following
    except sqlite3.DatabaseError:
        pass  # not even the table could be found: nothing to salvage
    finally:
        conn.close()
    return found, gaps


def _payload_or_none(raw: object) -> IngestPayload | None:
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) and "channelId" in value and "messageId" in value else None


def _next_readable(conn: sqlite3.Connection, position: int) -> int | None:
    """The first readable sequence number after an unreadable one at `position` (jumps 1, 2, 4, …)."""
    jump = 1
    while jump < 2**40:
        try:
            row = conn.execute("SELECT seq FROM entries NOT INDEXED WHERE seq >= ? ORDER BY seq LIMIT 1",
                               (position + jump,)).fetchone()
        except sqlite3.DatabaseError:
            jump *= 2
            continue
        return None if row is None else int(row[0])
    return None


class Journal:
    """SQLite journal in `<data dir>/journal.db`; thread-safe; async callers use `append` (group commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._batch: list[tuple[IngestPayload, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_write_error: str | None = None
        self.recovered: JournalRecovery | None = None
        # told "disk_full" or "error" when a write fails and None when writes succeed again (the metrics)
        self.on_write_error: Callable[[str | None], None] | None = None
        self._write_failing = False

    # -- lifecycle -------------------------------------------------------------------------------------

    def open(self) -> Journal:
        """Open (or create) the journal. A damaged file is set aside as `journal.db.corrupt-<UTC>`, what
        SQLite can still read of its unfinished entries is journaled again in a fresh file, and
        `recovered` tells what happened. Other failures (a read-only directory) raise sqlite3/OS errors."""
        private_dir(self.path.parent)
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._recover(str(exc))
            return self
        self._conn = conn
        return self

    def _connect(self) -> sqlite3.Connection:
        if self.path.exists() and self.path.stat().st_size == 0:
            # SQLite would take an empty file for a new database; a journal we wrote never is one
            # (`-wal` may still hold its pages), so it is damaged, not new.
            raise sqlite3.DatabaseError("journal file is empty (zero length)")
        # SQLite gives `-wal` and `-shm` the mode of the database file: a 0600 file keeps all three private
        create_private(self.path)
        private_file(self.path)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        try:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only effective on a new file: prune gives space back
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            # A damaged page is often only found by the query that reads it: look at every page once now.
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("database disk image is malformed: " + "; ".join(problems))
            for suffix in ("-wal", "-shm"):
                private_file(self.path.with_name(self.path.name + suffix))
        except BaseException:
            conn.close()
            raise
        return conn

    def _recover(self, error: str) -> None:
        moved = set_aside(self.path, "corrupt", ("-wal", "-shm"))
        # Read a copy: SQLite may change the files it opens (WAL recovery, checkpoints), and the set-aside
        # files must stay as they were found.
        with tempfile.TemporaryDirectory(dir=self.path.parent, prefix=".salvage-") as tmp:
            copy = Path(tmp) / "salvage.db"
            shutil.copyfile(moved, copy)
            wal = moved.with_name(moved.name + "-wal")
            if wal.exists():
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            rows, gaps = _salvage(copy)
        self._conn = self._connect()
        payloads: list[IngestPayload] = []
        for payload in rows:
            payloads.append(payload)
            if len(payloads) >= 1000:
                self.append_many(payloads)
                payloads = []
        self.append_many(payloads)
        self.recovered = JournalRecovery(moved, error, len(rows), gaps)
        log.error("Journal damaged: set aside and started fresh; readable unfinished entries journaled again",
                  path=str(self.path), moved_to=str(moved), error=error, salvaged=len(rows),
                  unreadable_ranges=gaps)

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def corrupt_files(self) -> list[Path]:
        """Damaged journals set aside (kept until an operator removes them)."""
        return sorted(f for f in self.path.parent.glob(self.path.name + ".corrupt-*")
                      if not f.name.endswith(("-wal", "-shm")))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Journal:
        return self.open() if self._conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError("journal is not open")
        return self._conn

    @property
    def last_write_error(self) -> str | None:
        """The reason the last append failed, cleared by the next successful one (for /health)."""
        return self._last_write_error

    # -- writes ----------------------------------------------------------------------------------------

    def append_many(self, payloads: Sequence[IngestPayload]) -> list[int]:
        """Commit the payloads in one fsync'd transaction and return their sequence numbers."""
        if not payloads:
            return []
        now = time.time()
        rows = [
            (str(p["channelId"]), int(p["messageId"]), json.dumps(p, ensure_ascii=False, separators=(",", ":")),
             now, now)
            for p in payloads
        ]
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                seqs: list[int] = []
                for row in rows:
                    cur = conn.execute(
                        "INSERT INTO entries (channel_id, message_id, payload, received_at, updated_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        row,
                    )
                    seqs.append(int(cur.lastrowid or 0))
                conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                self._rollback_quietly()
                reason = _write_failure(exc, self.path.parent)
                full = reason == "disk_full"
                self._write_failed(reason)
                self._last_write_error = {"disk_full": "disk full",
                                          "read_only": f"read-only filesystem ({exc})"}.get(reason, str(exc))
                log.error(
                    {"disk_full": "Journal write failed: disk full",
                     "read_only": "Journal write failed: read-only filesystem"}.get(reason, "Journal write failed"),
                    path=str(self.path), error=str(exc), messages=len(rows),
                )
                if full:
                    raise JournalFullError(f"no space left for the journal at {self.path}") from exc
                raise JournalError(f"journal write failed: {exc}") from exc
        self._write_ok()
        if self._last_write_error is not None:
            log.info("Journal writes recovered", path=str(self.path))
            self._last_write_error = None
        return seqs

    def _write_failed(self, reason: WriteFailure) -> None:
        self._write_failing = True
        if self.on_write_error is not None:
            self.on_write_error(reason)

    def _write_ok(self) -> None:
        if self._write_failing:
            self._write_failing = False
            if self.on_write_error is not None:
                self.on_write_error(None)

    def append_sync(self, payload: IngestPayload) -> int:
        return self.append_many([payload])[0]

    async def append(self, payload: IngestPayload) -> int:
        """Durably journal one message; concurrent callers share one fsync (group commit)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._batch.append((payload, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_batches())
        return await fut

    async def _flush_batches(self) -> None:
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                seqs = await asyncio.to_thread(self.append_many, [p for p, _ in batch])
            except Exception as exc:  # every waiter must learn its message was not journaled
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), seq in zip(batch, seqs, strict=True):
                if not fut.done():
                    fut.set_result(seq)

    def _rollback_quietly(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to roll back: SQLite already did it

    def _set_state(self, seqs: Iterable[int], state: str, error: str | None = None,
                   attempts: int | None = None) -> None:
        now = time.time()
        params = [(state, error, attempts, now, seq) for seq in seqs]
        if not params:
            return
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "UPDATE entries SET state = ?, last_error = COALESCE(?, last_error),"
                    " attempts = COALESCE(?, attempts), updated_at = ? WHERE seq = ?",
                    params,
                )
                conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                self._rollback_quietly()
                self._write_failed(_write_failure(exc, self.path.parent))
                raise JournalError(f"journal update failed: {exc}") from exc
        self._write_ok()

    def mark_delivered(self, seqs: Iterable[int]) -> None:
        self._set_state(seqs, DELIVERED)

    def mark_queued(self, seq: int, attempts: int, error: str) -> None:
        self._set_state([seq], QUEUED, error, attempts)

    def mark_held(self, seq: int, attempts: int, error: str) -> None:
        self._set_state([seq], HELD, error, attempts)

    def record_attempt(self, seq: int, attempts: int, error: str) -> None:
        self._set_state([seq], PENDING, error, attempts)

    def prune(self) -> int:
        """Delete delivered and queued entries so the journal does not grow forever; returns how many."""
        with self._lock:
            conn = self.conn
            try:
                cur = conn.execute("DELETE FROM entries WHERE state IN ('delivered', 'queued')")
                removed = cur.rowcount
                if removed:
                    conn.execute("PRAGMA incremental_vacuum")
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(f"journal prune failed: {exc}") from exc
        return int(removed)

    # -- reads -----------------------------------------------------------------------------------------

    @staticmethod
    def _entry(row: tuple[int, str, int, str, str, int, str | None, float]) -> JournalEntry:
        seq, channel_id, message_id, payload, state, attempts, last_error, received_at = row
        return JournalEntry(seq, channel_id, message_id, json.loads(payload), state, attempts, last_error,
                            received_at)

    _COLUMNS = "seq, channel_id, message_id, payload, state, attempts, last_error, received_at"

    def _query(self, sql: str, params: Sequence[object]) -> list[JournalEntry]:
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        return [self._entry(r) for r in rows]

    def pending_channels(self) -> list[str]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT DISTINCT channel_id FROM entries WHERE state = 'pending'"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def next_pending(self, channel_id: str, after_seq: int = 0, limit: int = 100) -> list[JournalEntry]:
        """The channel's pending entries in arrival order (the publisher's per-channel queue)."""
        return self._query(
            f"SELECT {self._COLUMNS} FROM entries WHERE state = 'pending' AND channel_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (channel_id, after_seq, limit),
        )

    def held(self, limit: int = 100) -> list[JournalEntry]:
        return self._query(
            f"SELECT {self._COLUMNS} FROM entries WHERE state = 'held' ORDER BY seq LIMIT ?", (limit,)
        )

    def entries(self, state: str | None = None) -> list[JournalEntry]:
        if state is None:
            return self._query(f"SELECT {self._COLUMNS} FROM entries ORDER BY seq", ())
        return self._query(f"SELECT {self._COLUMNS} FROM entries WHERE state = ? ORDER BY seq", (state,))

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self.conn.execute("SELECT state, COUNT(*) FROM entries GROUP BY state").fetchall()
        out = {PENDING: 0, DELIVERED: 0, QUEUED: 0, HELD: 0}
        out.update({str(s): int(n) for s, n in rows})
        return out

    def oldest_pending_received_at(self) -> float | None:
        """When the oldest entry the API has not acknowledged (pending or held) was received (epoch s)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT MIN(received_at) FROM entries WHERE state IN ('pending', 'held')"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def pending_count(self) -> int:
        """Entries the API has not acknowledged and that are not in the failure queue (pending + held)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT COUNT(*) FROM entries WHERE state IN ('pending', 'held')"
            ).fetchone()
        return int(row[0])
