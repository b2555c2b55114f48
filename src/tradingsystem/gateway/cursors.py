"""Per-channel cursors: the id of the last message the API acknowledged, kept on disk with atomic writes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import structlog

from tradingsystem.gateway.files import private_dir, private_file

log = structlog.get_logger(__name__)


class Cursors:
    """`<data dir>/cursors.json`, `{"<channel id>": <message id>}`; implements `CursorReader`.

    A cursor only moves forward. Advancing updates memory; `flush` writes the file (temp file, fsync,
    rename, fsync of the directory), so a crash leaves either the old or the new file, never half of one.
    A cursor that lags after a crash only makes the next backfill re-read a few messages the API
    already has, which it drops as duplicates, so flushing on every acknowledgement is not needed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # two flushes must not rename their snapshots out of order
        self._positions: dict[str, int] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        private_file(self.path)
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            self._positions = {str(k): int(v) for k, v in data.items()}
        except (ValueError, TypeError) as exc:
            # A cursor is an optimisation for backfill, never the only copy of a message: start over.
            broken = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, broken)
            log.warning("Cursor file unreadable, starting without cursors", path=str(self.path),
                        moved_to=str(broken), error=str(exc))

    def last_acknowledged(self, channel_id: str) -> int | None:
        with self._lock:
            return self._positions.get(channel_id)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._positions)

    def advance(self, channel_id: str, message_id: int, *, flush: bool = False) -> bool:
        """Move the channel's cursor to `message_id` if that is further; True when it moved."""
        with self._lock:
            current = self._positions.get(channel_id)
            moved = current is None or message_id > current
            if moved:
                self._positions[channel_id] = message_id
                self._dirty = True
        if flush:
            self.flush()
        return moved

    @property
    def dirty(self) -> bool:
        return self._dirty

    def flush(self) -> None:
        """Write the cursors if they changed since the last write (atomic replace)."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            data = json.dumps(self._positions, sort_keys=True, indent=1).encode()
            self._dirty = False
        private_dir(self.path.parent)
        tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            with self._lock:
                self._dirty = True  # try again on the next flush
            tmp.unlink(missing_ok=True)
            raise
