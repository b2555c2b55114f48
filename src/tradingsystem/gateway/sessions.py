"""The Telegram session store: file modes, corrupt and expired sessions set aside, a lock, atomic installs."""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import sqlite3
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from tradingsystem.gateway.files import DIR_MODE, FILE_MODE, fsync_dir, set_aside

if TYPE_CHECKING:
    from tradingsystem.gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

# Telethon errors that mean the auth key stored in the session will never work again; the session is
# set aside as `.expired-<UTC>` and the gateway waits for `tradingsystem gateway login`.
AUTH_KEY_DEAD_ERRORS: tuple[str, ...] = (
    "AuthKeyUnregisteredError",
    "AuthKeyDuplicatedError",
    "AuthKeyInvalidError",
    "AuthKeyPermEmptyError",
    "SessionRevokedError",
    "SessionExpiredError",
    "UserDeactivatedError",
    "UserDeactivatedBanError",
)


def auth_key_dead_errors() -> tuple[type[BaseException], ...]:
    """The Telethon exception classes behind `AUTH_KEY_DEAD_ERRORS` (the ones this Telethon has)."""
    from telethon import errors

    found = (getattr(errors, name, None) for name in AUTH_KEY_DEAD_ERRORS)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


class SessionStatus(enum.Enum):
    MISSING = "missing"  # no session file: log in with `tradingsystem gateway login`
    NOT_LOGGED_IN = "not_logged_in"  # a valid Telethon session that holds no auth key
    READY = "ready"  # a valid Telethon session with an auth key
    CORRUPT = "corrupt"  # was not a Telethon session; it has just been renamed `.corrupt-<UTC>`


class SessionLocked(RuntimeError):
    """Another process holds the session's lock; one session must never be used by two processes."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        who = f" (pid {holder})" if holder else ""
        super().__init__(f"the session {path.name} is in use by another process{who}")


class SessionLock:
    """An exclusive `flock` on `<name>.session.lock`, held while a process uses the session."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> SessionLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SessionStore:
    """One named session in the session directory (`<dir>/<name>.session` plus its lock file)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> SessionStore:
        return cls(settings.session_dir, settings.telegram_session_name)

    @property
    def path(self) -> Path:
        return self.directory / f"{self.name}.session"

    @property
    def lock_path(self) -> Path:
        return self.directory / f"{self.name}.session.lock"

    # -- modes -------------------------------------------------------------------------------------

    def secure(self) -> None:
        """Create the directory 0700 and tighten it and every file in it (sessions hold account keys)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self._tighten(self.directory, DIR_MODE, "directory")
        for entry in self.directory.iterdir():
            info = entry.lstat()
            if stat.S_ISREG(info.st_mode):
                self._tighten(entry, FILE_MODE, "file")

    def _tighten(self, path: Path, wanted: int, what: str) -> None:
        current = stat.S_IMODE(path.lstat().st_mode)
        if current & ~wanted:
            os.chmod(path, wanted)
            log.warning(
                f"Session {what} permissions tightened",
                path=str(path),
                old_mode=oct(current),
                new_mode=oct(wanted),
            )

    # -- inspection --------------------------------------------------------------------------------

    def signature(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime) of the session file, to notice a new session written by `gateway login`."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def inspect(self) -> SessionStatus:
        """Status of the session file; a file that is not a Telethon session is renamed `.corrupt-<UTC>`."""
        if not self.path.exists():
            return SessionStatus.MISSING
        try:
            has_key = _telethon_session_has_key(self.path)
        except (sqlite3.Error, ValueError) as exc:
            moved = self.quarantine("corrupt")
            log.error("Corrupt session set aside", path=str(self.path), moved_to=str(moved), error=str(exc))
            return SessionStatus.CORRUPT
        return SessionStatus.READY if has_key else SessionStatus.NOT_LOGGED_IN

    def prepare(self) -> SessionStatus:
        """What every start does: modes enforced, then the file inspected (and set aside if corrupt)."""
        self.secure()
        return self.inspect()

    def quarantine(self, reason: Literal["corrupt", "expired"]) -> Path:
        """Rename the session (and its SQLite journal) to `<name>.session.<reason>-<UTC>`; returns the new path."""
        return set_aside(self.path, reason, ("-journal",))

    def set_aside_expired(self, error: BaseException) -> Path | None:
        """Rename a session whose auth key Telegram rejected to `.expired-<UTC>`."""
        if not self.path.exists():
            return None
        moved = self.quarantine("expired")
        log.error(
            "Session rejected by Telegram, set aside; run `tradingsystem gateway login`",
            path=str(self.path),
            moved_to=str(moved),
            error=type(error).__name__,
        )
        return moved

    # -- lock --------------------------------------------------------------------------------------

    def try_lock(self) -> SessionLock | None:
        """The session's lock, or None when another process (or another holder in this one) has it."""
        try:
            return self.lock()
        except SessionLocked:
            return None

    def lock(self) -> SessionLock:
        """Take the session's lock or raise `SessionLocked` naming the holder's pid."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            raise SessionLocked(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return SessionLock(self.lock_path, fd)

    # -- atomic install ----------------------------------------------------------------------------

    def temp_path(self) -> Path:
        """Where a login writes its new session before `install` moves it in place (same directory)."""
        return self.directory / f".{self.name}.login-{os.getpid()}.session"

    def install(self, new_session: Path) -> None:
        """Atomically replace the session with `new_session` (0600, fsync'd, then renamed, dir fsync'd)."""
        new_session = Path(new_session)
        if new_session.parent.resolve() != self.directory.resolve():
            raise ValueError("a new session must be written inside the session directory")
        _telethon_session_has_key(new_session)
        os.chmod(new_session, FILE_MODE)
        fd = os.open(new_session, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        journal = self.path.with_name(self.path.name + "-journal")
        with contextlib.suppress(FileNotFoundError):
            # A stale rollback journal would be applied to the new file by SQLite and damage it.
            journal.unlink()
        os.replace(new_session, self.path)
        fsync_dir(self.directory)
        log.info("Session installed", path=str(self.path))

    def discard_temp(self, temp: Path) -> None:
        for candidate in (temp, temp.with_name(temp.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()


def _telethon_session_has_key(path: Path) -> bool:
    """True if `path` is a Telethon SQLite session with an auth key; raises if it is not a session at all."""
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    # mode=rw (not ro) lets SQLite roll back a hot journal left by a crash instead of failing.
    uri = f"file:{path}?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        check = connection.execute("PRAGMA quick_check").fetchone()
        if not check or check[0] != "ok":
            raise ValueError(f"integrity check failed: {check[0] if check else 'no answer'}")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"version", "sessions"} <= tables:
            raise ValueError("not a Telethon session (tables version and sessions missing)")
        row = connection.execute("SELECT auth_key FROM sessions LIMIT 1").fetchone()
    finally:
        connection.close()
    return bool(row and row[0])
