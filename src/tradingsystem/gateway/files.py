"""The gateway's files on disk: private modes (0700 directories, 0600 files), fsync of a directory, set-aside names."""

from __future__ import annotations

import contextlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def _tighten(path: Path, wanted: int, what: str) -> None:
    """Take group/other bits away from a file or directory of ours; one warning when that was needed."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return  # not ours to change (the operator's layout): the service reports nothing it cannot fix
    mode = stat.S_IMODE(info.st_mode)
    if mode & ~wanted & 0o777:
        os.chmod(path, mode & wanted)
        log.warning(f"Gateway {what} was readable by other users, mode tightened", path=str(path),
                    mode=oct(mode), now=oct(mode & wanted))


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700, or tighten it to 0700; returns it."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask; the parents keep theirs
    else:
        _tighten(path, DIR_MODE, "directory")
    return path


def private_file(path: Path) -> None:
    """Tighten an existing file to 0600 (new files are created 0600 by their writers)."""
    _tighten(path, FILE_MODE, "file")


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (before a library opens it with its own mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


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
