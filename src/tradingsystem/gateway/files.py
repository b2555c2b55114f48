"""The gateway's files on disk: private modes (0700 directories, 0600 files), fsync of a directory, set-aside names."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(path: Path, reason: str, companions: tuple[str, ...] = ()) -> Path:
    """Rename `path` (and `path<suffix>` for each companion that exists, e.g. SQLite's `-wal`) to
    `<name>.<reason>-<UTC timestamp>`, mode 0600; returns the new path."""
    target = path.with_name(f"{path.name}.{reason}-{utc_stamp()}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{reason}-{utc_stamp()}-{n}")
        n += 1
    os.replace(path, target)
    for suffix in companions:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, target.with_name(target.name + suffix))
            with contextlib.suppress(OSError):
                os.chmod(target.with_name(target.name + suffix), FILE_MODE)
    with contextlib.suppress(OSError):
        os.chmod(target, FILE_MODE)
    fsync_dir(path.parent)
    return target
