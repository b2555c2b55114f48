"""Case 4: the failure queue and the journal damaged (torn last line, garbage appended, zero-length file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fault.harness import (
    Ledger,
    N,
    Services,
    channel_id,
    count_rows,
    health,
    metric,
    payloads,
    stored,
    write_export,
)
from tests.support.servers import ProcessServer, wait_until
from tradingsystem.gateway.failure_queue import FailureQueue
from tradingsystem.gateway.journal import Journal

pytestmark = pytest.mark.fault

HALF = N // 2


def seed(data: Path, number: int, journal_ids: range, queue_ids: range) -> None:
    """Pending entries in the journal and lines in the failure queue, as a gateway that stopped leaves them."""
    data.mkdir(mode=0o700)
    if journal_ids:
        with Journal(data / "journal.db").open() as journal:
            journal.append_many(payloads(number, journal_ids))
    with (data / "failure-queue.jsonl").open("wb") as fh:
        fh.writelines(FailureQueue.encode(p, 4, "HTTP 503: Database unavailable") for p in payloads(number, queue_ids))


def records(server: ProcessServer) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("damage", ["torn", "garbage", "empty"])
def test_damaged_queue_and_journal_start_keep_every_good_record_and_report_the_bad(
        damage: str, services: Services, shared_api: ProcessServer, fault_db: str, fault_dir: Path,
        ledger: Ledger) -> None:
    number = {"torn": 1940000001, "garbage": 1940000002, "empty": 1940000003}[damage]
    channel, data = channel_id(number), fault_dir / f"case4-{damage}"
    queue_path, journal_path = data / "failure-queue.jsonl", data / "journal.db"
    extra: dict[str, str] = {}
    if damage == "empty":
        # a zero-length journal (and cursor file) beside a whole queue; the other half arrives after the start,
        # through the fresh journal
        seed(data, number, range(0), range(1, HALF + 1))
        journal_path.write_bytes(b"")
        (data / "cursors.json").write_bytes(b"")
        extra["TELEGRAM_REPLAY_FILE"] = str(write_export(fault_dir / "case4-empty.json", number, HALF, HALF + 1))
        expected, bad_queue_lines = N, 0
    else:
        # the queue holds the older messages, the journal the newer ones (as after an outage)
        seed(data, number, range(HALF + 1, N + 1), range(1, HALF + 1))
        size = journal_path.stat().st_size
        with queue_path.open("r+b") as fh:
            if damage == "torn":  # a writer died in the middle of the last line; the file lost its last page
                raw = fh.read()
                fh.truncate(len(raw) - len(raw.splitlines()[-1]) // 2 - 1)
                os.truncate(journal_path, size - 4096 - 1000)
            else:  # a bad block's worth of bytes after the last line and after the journal's last page
                fh.seek(0, os.SEEK_END)
                fh.write(b"\x00\x17garbage from a bad disk block\n" + b"\xff\xfe\x00" * 100)
                with journal_path.open("ab") as jf:
                    jf.write(os.urandom(8192))
        bad_queue_lines = 1 if damage == "torn" else 2
        expected = N - (1 if damage == "torn" else 0)  # the torn queue line is the one record not whole
    gateway = services.gateway(data, shared_api.url, name=f"gateway-damaged-{damage}", **extra)
    try:
        gateway.wait_healthy(90)
        took = None
        log_lines = records(gateway)
        damaged = [r for r in log_lines if str(r["message"]).startswith("Journal damaged")]
        salvaged = int(damaged[0]["salvaged"]) if damaged else None  # type: ignore[call-overload]
        if damage == "torn":
            assert damaged and salvaged is not None, "the truncated journal is reported"
            expected -= HALF - salvaged  # entries in the lost page: reported as not salvaged
        wait_until(lambda: stored(fault_db, channel) >= expected and health(gateway)["failureQueue"]["lines"] == 0
                   and health(gateway)["journalPending"] == 0, 180, interval=0.2,
                   message="every good record delivered")
        took = health(gateway)["uptime"]
        body = health(gateway)
        corrupt_lines = metric(gateway, "telegram_failure_queue_corrupt_lines_total")
        journal_corrupt = metric(gateway, "telegram_journal_corrupt_total")
    finally:
        gateway.stop()
    log_lines = records(gateway)
    set_aside = sum(int(r["lines"]) for r in log_lines  # type: ignore[call-overload]
                    if r["message"] == "Failure queue lines unreadable, set aside")
    counts = count_rows(fault_db, channel)
    ledger.add(f"4. damaged files: {damage}", sent=N, counts=counts, seconds=took, seconds_label="all delivered at",
               expected=expected,
               note=f"{N - expected} records were in the damaged bytes; queue lines set aside {set_aside} (metric {corrupt_lines:.0f}); journal set aside "
                    f"{journal_corrupt:.0f} (salvaged {salvaged if salvaged is not None else '-'})")
    assert "Traceback" not in gateway.output()
    assert (counts.distinct, counts.duplicated) == (expected, 0)
    assert set_aside == corrupt_lines == bad_queue_lines
    if damage in ("torn", "empty"):
        assert journal_corrupt == 1 and damaged
        assert any("Damaged journal set aside" in w for w in body.get("warnings", [])), body
    if bad_queue_lines:
        assert body["failureQueue"].get("corruptLines") == bad_queue_lines, body
        assert list(data.glob("failure-queue.jsonl.corrupt-*"))
