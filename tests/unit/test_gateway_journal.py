"""The gateway journal: durable appends, per-entry state, per-channel order, pruning, crash and full disk."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.support.fs import Ext4Image, TinyFilesystem, damage_pages, fill

from tradingsystem.gateway.journal import Journal, JournalError, JournalFullError


def payload(channel: str, message_id: int, text: str = "Ativo: PETR4 Compra: 30,10") -> dict[str, Any]:
    return {"channelId": channel, "messageId": message_id, "timestamp": "2025-10-24T19:30:39Z", "text": text,
            "kind": "new", "editDate": None, "photos": [], "source": "bot", "chatTitle": "TP", "forwardedFrom": None}


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with Journal(tmp_path / "journal.db").open() as j:
        yield j


def test_uses_wal_with_full_sync(journal: Journal) -> None:
    assert journal.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_appended_entries_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with Journal(path).open() as j:
        seqs = j.append_many([payload("-1001", 1), payload("-1001", 2)])
        assert seqs == sorted(seqs) and len(set(seqs)) == 2
    with Journal(path).open() as j:
        entries = j.entries("pending")
        assert [e.message_id for e in entries] == [1, 2]
        assert entries[0].payload == payload("-1001", 1)


def test_state_transitions_and_counts(journal: Journal) -> None:
    a, b, c, d = journal.append_many([payload("-1001", i) for i in range(1, 5)])
    journal.mark_delivered([a])
    journal.mark_queued(b, 4, "HTTP 503")
    journal.mark_held(c, 4, "HTTP 503")
    journal.record_attempt(d, 1, "timeout")
    assert journal.counts() == {"pending": 1, "delivered": 1, "queued": 1, "held": 1}
    assert journal.pending_count() == 2  # pending and held: not yet anywhere else
    [held] = journal.held()
    assert (held.seq, held.attempts, held.last_error) == (c, 4, "HTTP 503")
    [pending] = journal.entries("pending")
    assert (pending.seq, pending.attempts, pending.last_error) == (d, 1, "timeout")


def test_pending_is_read_per_channel_in_arrival_order(journal: Journal) -> None:
    journal.append_many([payload("-100A", 3), payload("-100B", 1), payload("-100A", 1), payload("-100A", 2)])
    assert [e.message_id for e in journal.next_pending("-100A")] == [3, 1, 2]  # arrival, not message id
    first = journal.next_pending("-100A", limit=1)[0]
    assert [e.message_id for e in journal.next_pending("-100A", after_seq=first.seq)] == [1, 2]
    assert sorted(journal.pending_channels()) == ["-100A", "-100B"]


def test_prune_removes_only_finished_entries_and_bounds_the_file(journal: Journal) -> None:
    keep = journal.append_sync(payload("-1001", 1))
    big = "x" * 4000
    sizes = []
    for round_ in range(6):
        seqs = journal.append_many([payload("-1002", round_ * 1000 + i, big) for i in range(200)])
        journal.mark_delivered(seqs[:100])
        for seq in seqs[100:]:
            journal.mark_queued(seq, 4, "HTTP 503")
        assert journal.prune() == 200
        sizes.append(journal.path.stat().st_size + Path(f"{journal.path}-wal").stat().st_size)
    assert [e.seq for e in journal.entries()] == [keep]
    # the space of pruned rows is reused: later rounds do not grow the files beyond the first round
    assert max(sizes[1:]) <= sizes[0] * 1.1


async def test_concurrent_appends_share_commits_and_all_get_sequence_numbers(journal: Journal) -> None:
    seqs = await asyncio.gather(*(journal.append(payload(f"-100{i % 3}", i + 1)) for i in range(300)))
    assert len(set(seqs)) == 300
    assert journal.counts()["pending"] == 300


WRITER = """
import sys
from tradingsystem.gateway.journal import Journal
j = Journal(__import__("pathlib").Path(sys.argv[1])).open()
i = 0
while True:
    i += 1
    j.append_sync({"channelId": "-1001", "messageId": i, "timestamp": "2025-10-24T19:30:39Z", "text": "m%d" % i})
    # the source would be acknowledged here: only after append returned
    sys.stdout.write("%d\\n" % i)
    sys.stdout.flush()
"""


def test_kill_9_while_appending_loses_no_acknowledged_message(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = 0
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 200:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with Journal(path).open() as j:
        ids = [e.message_id for e in j.entries()]
    assert ids[: acknowledged] == list(range(1, acknowledged + 1))
    assert len(ids) == len(set(ids))


def test_full_disk_raises_clearly_keeps_what_was_written_and_recovers(tmp_path: Path) -> None:
    with TinyFilesystem(tmp_path / "small", size_kib=1024) as fs, Journal(fs.path / "journal.db").open() as j:
        j.append_many([payload("-1001", i) for i in range(1, 11)])
        filler = fill(fs.path)
        with capture_logs() as logs, pytest.raises(JournalFullError):
            j.append_many([payload("-1001", 100 + i, "y" * 2000) for i in range(50)])
        assert j.last_write_error == "disk full"
        assert any(r["event"] == "Journal write failed: disk full" and r["log_level"] == "error" for r in logs)
        assert [e.message_id for e in j.entries()] == list(range(1, 11))
        filler.unlink()
        j.append_many([payload("-1001", 100 + i, "y" * 2000) for i in range(50)])
        assert j.last_write_error is None
        assert len(j.entries()) == 60


def test_a_filesystem_turned_read_only_is_named_as_the_reason(tmp_path: Path) -> None:
    # Found by the fault suite: the kernel turned the data directory read-only under a running gateway and
    # /health said only "disk I/O error", the metric only reason="error".
    reasons: list[str | None] = []
    with Ext4Image(tmp_path / "fs") as fs:
        with Journal(fs.path / "data" / "journal.db").open() as j:
            j.on_write_error = reasons.append
            j.append_sync(payload("-1001", 1))
            fs.make_read_only()
            with pytest.raises(JournalError):
                j.append_sync(payload("-1001", 2))
            assert j.last_write_error is not None and j.last_write_error.startswith("read-only filesystem")
            assert reasons == ["read_only"]
            with pytest.raises(JournalError):
                j.mark_delivered([1])
            assert reasons == ["read_only", "read_only"]


def test_database_file_is_a_plain_sqlite_database(journal: Journal) -> None:
    journal.append_sync(payload("-1001", 7))
    other = sqlite3.connect(journal.path)
    try:
        assert other.execute("SELECT message_id, state FROM entries").fetchall() == [(7, "pending")]
    finally:
        other.close()


def damaged_journal(path: Path, total: int = 2000, delivered: int = 100) -> None:
    """A journal of `total` entries (the first `delivered` of them delivered) with three pages overwritten
    in the middle, as a bad disk block or a stray write would leave it."""
    with Journal(path).open() as j:
        j.append_many([payload("-1001", i, "Ativo: PETR4 " + "x" * 400) for i in range(1, total + 1)])
        j.mark_delivered(range(1, delivered + 1))
    damage_pages(path)


def test_a_malformed_journal_is_set_aside_salvaged_and_started_fresh(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    damaged_journal(path)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        other = sqlite3.connect(path)
        try:
            other.execute("PRAGMA integrity_check").fetchall()
        finally:
            other.close()
    damaged = path.read_bytes()
    with capture_logs() as logs, Journal(path).open() as j:
        recovered = j.recovered
        assert recovered is not None and "malformed" in recovered.error
        assert re.fullmatch(r"journal\.db\.corrupt-\d{8}T\d{6}Z", recovered.moved_to.name)
        # kept as it was found (SQLite's first look may bump the change counter in the 100-byte header)
        assert recovered.moved_to.read_bytes()[100:] == damaged[100:]
        assert recovered.moved_to.stat().st_mode & 0o777 == 0o600
        # what SQLite could read of the 1900 unfinished entries is pending again, in order; the damaged
        # pages' entries are the ones lost
        ids = [e.message_id for e in j.entries("pending")]
        assert len(ids) == recovered.salvaged and 1500 < recovered.salvaged < 1900
        assert ids == sorted(ids) and min(ids) > 100
        assert j.corrupt_files() == [recovered.moved_to]
        j.append_sync(payload("-1001", 5000))  # a fresh, working journal
    assert any(r["event"].startswith("Journal damaged") and r["log_level"] == "error" for r in logs)
    with Journal(path).open() as again:
        assert again.recovered is None and again.pending_count() == recovered.salvaged + 1


def test_a_truncated_journal_gives_back_every_entry_before_the_cut(tmp_path: Path) -> None:
    # Found by the fault suite: a file that lost its end (a torn last page) was salvaged as nothing at all,
    # because SQLite refuses a file shorter than its header says, before reading a single page.
    path = tmp_path / "journal.db"
    with Journal(path).open() as j:
        j.append_many([payload("-1001", i, "Ativo: PETR4 " + "x" * 300) for i in range(1, 2001)])
    os.truncate(path, path.stat().st_size - 4096 - 1000)
    with Journal(path).open() as j:
        recovered = j.recovered
        assert recovered is not None and "malformed" in recovered.error
        ids = [e.message_id for e in j.entries("pending")]
        # the lost page and a bit held a few dozen of these entries (a page's rows, wherever in the table it
        # was); every other one is back, in order
        assert 1950 < recovered.salvaged < 2000 and len(ids) == recovered.salvaged and ids == sorted(ids)


@pytest.mark.parametrize(("content", "error"), [
    (b"not a database at all\n" * 200, "file is not a database"),
    (b"", "empty"),
])
def test_a_journal_that_is_not_sqlite_or_empty_is_set_aside(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(content)
    with Journal(path).open() as j:
        assert j.recovered is not None and error in j.recovered.error and j.recovered.salvaged == 0
        assert j.recovered.moved_to.read_bytes() == content
        j.append_sync(payload("-1001", 1))
        assert j.pending_count() == 1


def test_a_read_only_directory_is_an_error_not_damage(tmp_path: Path) -> None:
    with TinyFilesystem(tmp_path / "ro", size_kib=1024) as fs:
        with Journal(fs.path / "journal.db").open() as j:
            j.append_sync(payload("-1001", 1))
        fs.remount(read_only=True)
        try:
            with pytest.raises(sqlite3.OperationalError):
                Journal(fs.path / "journal.db").open()
            assert sorted(p.name for p in fs.path.iterdir()) == ["journal.db"]  # nothing set aside
        finally:
            fs.remount(read_only=False)
