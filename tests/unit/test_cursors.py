"""Per-channel cursors: forward only, persisted atomically, readable through the CursorReader protocol."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from tradingsystem.gateway.cursors import Cursors
from tradingsystem.gateway.types import CursorReader


def test_unknown_channel_has_no_cursor(tmp_path: Path) -> None:
    reader: CursorReader = Cursors(tmp_path / "cursors.json")
    assert reader.last_acknowledged("-1001") is None


def test_cursor_only_moves_forward(tmp_path: Path) -> None:
    cursors = Cursors(tmp_path / "cursors.json")
    assert cursors.advance("-1001", 10)
    assert not cursors.advance("-1001", 7)  # an edit of an older message acknowledged later
    assert cursors.advance("-1001", 11)
    assert cursors.last_acknowledged("-1001") == 11


def test_flush_persists_and_a_new_instance_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cursors.json"
    cursors = Cursors(path)
    cursors.advance("-1001", 5)
    cursors.advance("-1002", 9, flush=True)
    assert json.loads(path.read_text()) == {"-1001": 5, "-1002": 9}
    assert (path.stat().st_mode & 0o777) == 0o600
    assert Cursors(path).snapshot() == {"-1001": 5, "-1002": 9}
    assert [p.name for p in path.parent.iterdir()] == ["cursors.json"]  # no temporary file left behind


def test_flush_writes_only_when_something_changed(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    cursors = Cursors(path)
    cursors.flush()
    assert not path.exists()
    cursors.advance("-1001", 1)
    assert cursors.dirty
    cursors.flush()
    assert not cursors.dirty
    inode = path.stat().st_ino
    cursors.flush()
    assert path.stat().st_ino == inode


def test_concurrent_advances_and_flushes_end_with_the_highest_ids(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    cursors = Cursors(path)

    def work(channel: str) -> None:
        for i in range(1, 201):
            cursors.advance(channel, i)
            if i % 20 == 0:
                cursors.flush()

    threads = [threading.Thread(target=work, args=(f"-100{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cursors.flush()
    assert json.loads(path.read_text()) == {f"-100{n}": 200 for n in range(4)}


def test_unreadable_file_is_moved_aside_and_cursors_start_over(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    path.write_text("{not json")
    cursors = Cursors(path)
    assert cursors.snapshot() == {}
    assert (tmp_path / "cursors.json.corrupt").read_text() == "{not json"
