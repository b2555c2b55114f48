"""Session store: modes tightened, corrupt and expired sessions set aside, the lock, atomic installs."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from telethon.errors import AuthKeyUnregisteredError
from tests.support.fake_telethon import write_telethon_session

from tradingsystem.gateway.sessions import (
    SessionLocked,
    SessionStatus,
    SessionStore,
    auth_key_dead_errors,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / ".session", "telegram-gateway")


def test_directory_created_0700(store: SessionStore) -> None:
    store.secure()
    assert mode(store.directory) == 0o700


def test_loose_modes_are_tightened_and_logged(store: SessionStore) -> None:
    store.directory.mkdir(mode=0o755)
    os.chmod(store.directory, 0o755)
    write_telethon_session(store.path)
    os.chmod(store.path, 0o644)
    old_copy = store.directory / "telegram-gateway.session.expired-20250101T000000Z"
    old_copy.write_bytes(b"x")
    os.chmod(old_copy, 0o666)

    with capture_logs() as logs:
        status = store.prepare()

    assert status is SessionStatus.READY
    assert mode(store.directory) == 0o700
    assert mode(store.path) == 0o600
    assert mode(old_copy) == 0o600
    tightened = [entry for entry in logs if "permissions tightened" in entry["event"]]
    assert {entry["old_mode"] for entry in tightened} == {"0o755", "0o644", "0o666"}
    assert all(entry["log_level"] == "warning" for entry in tightened)


def test_correct_modes_are_left_alone_without_logs(store: SessionStore) -> None:
    store.secure()
    write_telethon_session(store.path)
    os.chmod(store.path, 0o600)
    with capture_logs() as logs:
        store.secure()
    assert not [entry for entry in logs if "tightened" in entry["event"]]


def test_missing_and_not_logged_in(store: SessionStore) -> None:
    assert store.prepare() is SessionStatus.MISSING
    write_telethon_session(store.path, with_key=False)
    assert store.inspect() is SessionStatus.NOT_LOGGED_IN
    assert store.path.exists()


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all" * 100, b"", b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["text", "empty", "damaged-header"],
)
def test_corrupt_file_is_renamed(store: SessionStore, content: bytes) -> None:
    store.secure()
    store.path.write_bytes(content)
    with capture_logs() as logs:
        status = store.inspect()
    assert status is SessionStatus.CORRUPT
    assert not store.path.exists()
    moved = [p.name for p in store.directory.iterdir() if ".corrupt-" in p.name]
    assert len(moved) == 1
    assert re.fullmatch(r"telegram-gateway\.session\.corrupt-\d{8}T\d{6}Z", moved[0])
    assert (store.directory / moved[0]).read_bytes() == content
    assert any(entry["event"] == "Corrupt session set aside" for entry in logs)
    # The next start finds no session: login required, not a crash.
    assert store.prepare() is SessionStatus.MISSING


def test_other_sqlite_database_is_corrupt(store: SessionStore) -> None:
    store.secure()
    connection = sqlite3.connect(store.path)
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.commit()
    connection.close()
    assert store.inspect() is SessionStatus.CORRUPT


def test_two_corrupt_files_in_the_same_second_keep_both(store: SessionStore) -> None:
    store.secure()
    store.path.write_bytes(b"garbage one")
    store.inspect()
    store.path.write_bytes(b"garbage two")
    store.inspect()
    moved = sorted(p.read_bytes() for p in store.directory.iterdir() if ".corrupt-" in p.name)
    assert moved == [b"garbage one", b"garbage two"]


def test_expired_session_is_renamed(store: SessionStore) -> None:
    store.secure()
    write_telethon_session(store.path)
    error = AuthKeyUnregisteredError(request=None)
    moved = store.set_aside_expired(error)
    assert moved is not None
    assert re.fullmatch(r"telegram-gateway\.session\.expired-\d{8}T\d{6}Z", moved.name)
    assert not store.path.exists()
    assert mode(moved) == 0o600
    assert store.prepare() is SessionStatus.MISSING
    assert store.set_aside_expired(error) is None


def test_auth_key_errors_known() -> None:
    names = {cls.__name__ for cls in auth_key_dead_errors()}
    assert {"AuthKeyUnregisteredError", "AuthKeyDuplicatedError", "SessionRevokedError",
            "SessionExpiredError"} <= names


def test_lock_is_exclusive_in_one_process(store: SessionStore) -> None:
    first = store.lock()
    with pytest.raises(SessionLocked) as raised:
        store.lock()
    assert raised.value.holder == str(os.getpid())
    assert store.try_lock() is None
    first.release()
    second = store.try_lock()
    assert second is not None and second.held
    second.release()
    assert mode(store.lock_path) == 0o600


def test_lock_is_exclusive_across_processes(store: SessionStore) -> None:
    holder_code = (
        "import sys; from pathlib import Path\n"
        "from tradingsystem.gateway.sessions import SessionStore\n"
        "lock = SessionStore(Path(sys.argv[1]), 'telegram-gateway').lock()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "lock.release()\n"
        "print('released', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(store.directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(SessionLocked) as raised:
            store.lock()
        assert raised.value.holder == str(process.pid)
        assert "in use by another process" in str(raised.value)
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "released"
        with store.lock() as lock:
            assert lock.held
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def test_lock_released_when_holder_dies(store: SessionStore) -> None:
    code = (
        "import os, sys; from pathlib import Path\n"
        "from tradingsystem.gateway.sessions import SessionStore\n"
        "SessionStore(Path(sys.argv[1]), 'telegram-gateway').lock()\n"
        "os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(store.directory)], check=False)
    with store.lock() as lock:
        assert lock.held


def test_install_is_atomic_with_modes(store: SessionStore) -> None:
    store.secure()
    write_telethon_session(store.path)
    before = store.path.read_bytes()
    temp = store.temp_path()
    assert temp.parent == store.directory
    write_telethon_session(temp)
    os.chmod(temp, 0o644)
    store.install(temp)
    assert not temp.exists()
    assert mode(store.path) == 0o600
    assert store.path.read_bytes() != before
    assert store.inspect() is SessionStatus.READY


def test_install_refuses_bad_files(store: SessionStore, tmp_path: Path) -> None:
    store.secure()
    outside = tmp_path / "elsewhere.session"
    write_telethon_session(outside)
    with pytest.raises(ValueError, match="inside the session directory"):
        store.install(outside)
    garbage = store.temp_path()
    garbage.write_bytes(b"nope" * 10)
    with pytest.raises((ValueError, sqlite3.DatabaseError)):
        store.install(garbage)
    assert not store.path.exists()
    store.discard_temp(garbage)
    assert not garbage.exists()


def test_signature_changes_when_a_new_session_is_installed(store: SessionStore) -> None:
    store.secure()
    assert store.signature() is None
    write_telethon_session(store.path)
    first = store.signature()
    temp = store.temp_path()
    write_telethon_session(temp)
    store.install(temp)
    assert store.signature() not in (None, first)
