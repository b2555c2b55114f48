"""Log reading for `logs` and `up`'s failure report, and the restart count `status` derives from supervisord."""

from __future__ import annotations

import os
from pathlib import Path

from tradingsystem.launcher.commands import Follower, format_uptime, tail_lines, unexpected_exits


def test_tail_lines_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text("".join(f"line {n}\n" for n in range(1000)))
    assert tail_lines(log, 3) == ["line 997", "line 998", "line 999"]
    assert tail_lines(tmp_path / "missing.log") == []


def test_the_follower_prints_only_new_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("old\n")
    follower = Follower(log)
    assert follower.read_new() == []
    with log.open("a") as handle:
        handle.write("first\nsecond half")
    assert follower.read_new() == ["first"]
    with log.open("a") as handle:
        handle.write("-done\n")
    assert follower.read_new() == ["second half-done"]


def test_the_follower_survives_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text("before\n")
    follower = Follower(log)
    os.rename(log, tmp_path / "api.log.1")  # supervisord's rotation: rename, then a new file
    log.write_text("after rotation\n")
    assert follower.read_new() == ["after rotation"]
    log.write_text("")
    assert follower.read_new() == []
    with log.open("a") as handle:
        handle.write("after truncation\n")
    assert follower.read_new() == ["after truncation"]


def test_a_follower_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    log = tmp_path / "postgres.log"
    follower = Follower(log)
    assert follower.read_new() == []
    log.write_text("created\n")
    assert follower.read_new() == ["created"]


def test_unexpected_exits_count_since_supervisord_last_started(tmp_path: Path) -> None:
    log = tmp_path / "supervisord.log"
    log.write_text(
        "2026-01-01 10:00:00,000 INFO supervisord started with pid 10\n"
        "2026-01-01 10:00:05,000 WARN exited: api (terminated by SIGKILL; not expected)\n"
        "2026-01-01 10:10:00,000 INFO supervisord started with pid 20\n"
        "2026-01-01 10:10:05,000 WARN exited: api (terminated by SIGKILL; not expected)\n"
        "2026-01-01 10:10:09,000 WARN exited: api (exit status 1; not expected)\n"
        "2026-01-01 10:10:10,000 INFO exited: gateway (exit status 0; expected)\n"
        "2026-01-01 10:10:11,000 INFO stopped: workspace (exit status 0)\n"
    )
    assert unexpected_exits(log) == {"api": (2, "exit status 1")}
    assert unexpected_exits(tmp_path / "none.log") == {}


def test_uptime_is_hours_minutes_seconds() -> None:
    assert format_uptime(3723) == "1:02:03"
    assert format_uptime(None) == "-"
