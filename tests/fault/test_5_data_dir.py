"""Case 5: the gateway's data directory full, then read-only, during a burst."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fault.harness import (
    Ledger,
    N,
    Services,
    channel_id,
    count_rows,
    health,
    journaled_ids,
    metric,
    stored,
    stored_ids,
    wait_stored,
    write_export,
)
from tests.support.fs import Ext4Image, TinyFilesystem, fill
from tests.support.servers import ProcessServer, wait_until

pytestmark = pytest.mark.fault


def journaled(gateway: ProcessServer, channel: str) -> float:
    """Messages the gateway has journaled (and so acknowledged to its source) so far."""
    try:
        return metric(gateway, f'telegram_messages_received_total{{channel_id="{channel}"}}')
    except (AssertionError, httpx.HTTPError):
        return 0.0  # not serving yet, or no message of the channel yet


def test_full_data_directory_mid_burst_loses_nothing_and_resumes_when_space_returns(
        services: Services, shared_api: ProcessServer, fault_db: str, fault_dir: Path, ledger: Ledger) -> None:
    number = 1950000001
    channel = channel_id(number)
    export = write_export(fault_dir / "case5-full.json", number, N)
    with TinyFilesystem(fault_dir / "case5-full", size_kib=64 * 1024) as fs:
        data = fs.path / "data"
        gateway = services.gateway(data, shared_api.url, name="gateway-disk-full", TELEGRAM_REPLAY_FILE=str(export))
        try:
            wait_until(lambda: journaled(gateway, channel) >= N // 5, 180, interval=0.02, message="the burst under way")
            filler = fill(fs.path)
            assert journaled(gateway, channel) < N, "the disk must fill while the source is still handing over"
            wait_until(lambda: health(gateway).get("error", "").startswith("Journal write failed: disk full"), 60,
                       message="/health to say the disk is full")
            body = health(gateway)
            assert body["status"] == "unhealthy"
            assert metric(gateway, "telegram_journal_disk_full") == 1
            failed = metric(gateway, 'telegram_journal_write_errors_total{reason="disk_full"}')
            assert failed >= 1
            # what the journal holds was acknowledged to the source: it must all arrive, disk full or not
            acknowledged = journaled_ids(data, channel)
            wait_until(lambda: acknowledged <= stored_ids(fault_db, channel), 120, interval=0.2,
                       message="every journaled message delivered while the disk is full")
            at_full = stored(fault_db, channel)
            filler.unlink()
            freed = time.monotonic()
            resumed = wait_stored(fault_db, channel, N, 240, "delivery to resume once space returned")
            wait_until(lambda: health(gateway)["journalPending"] == 0 and "error" not in health(gateway), 60,
                       message="healthy again")
            assert metric(gateway, "telegram_journal_disk_full") == 0
            resumed = time.monotonic() - freed
        finally:
            gateway.stop()
    counts = count_rows(fault_db, channel)
    ledger.add("5. data directory full mid-burst", sent=N, counts=counts, seconds=resumed,
               seconds_label="all stored after space returned in",
               note=f"{len(acknowledged):,} journaled when the disk filled, all stored while full "
                    f"({at_full:,}); {failed:.0f} refused writes counted (reason disk_full)")
    assert (counts.distinct, counts.duplicated) == (N, 0)


@pytest.fixture
def ext4() -> Iterator[Ext4Image]:
    root = Path(tempfile.mkdtemp(prefix="ts-fault-ro-"))
    try:
        with Ext4Image(root / "fs") as image:
            yield image
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_read_only_data_directory_mid_burst_loses_nothing_acknowledged(
        ext4: Ext4Image, services: Services, shared_api: ProcessServer, fault_db: str, fault_dir: Path,
        ledger: Ledger) -> None:
    number = 1950000002
    channel = channel_id(number)
    export = write_export(fault_dir / "case5-ro.json", number, N)
    data = ext4.path / "data"
    gateway = services.gateway(data, shared_api.url, name="gateway-read-only", TELEGRAM_REPLAY_FILE=str(export))
    try:
        wait_until(lambda: journaled(gateway, channel) >= N // 5, 180, interval=0.02, message="the burst under way")
        ext4.make_read_only()
        wait_until(lambda: "error" in health(gateway), 60, message="/health to say the journal cannot be written")
        body = health(gateway)
        assert body["status"] == "unhealthy" and "read-only" in body["error"].lower(), body
        failed = metric(gateway, 'telegram_journal_write_errors_total{reason="read_only"}')
        assert failed >= 1
        at_ro = stored(fault_db, channel)
    finally:
        gateway.stop()
    acknowledged = journaled_ids(data, channel)
    assert at_ro < N and len(acknowledged) < N, "the filesystem must turn read-only mid-burst"
    ext4.repair()
    repaired = time.monotonic()
    # restarted on the repaired directory: the journal first, then the source hands over the rest again
    again = services.gateway(data, shared_api.url, name="gateway-after-read-only", TELEGRAM_REPLAY_FILE=str(export))
    try:
        again.wait_healthy(90)
        wait_until(lambda: acknowledged <= stored_ids(fault_db, channel), 180, interval=0.2,
                   message="every acknowledged message stored after the repair")
        drained = time.monotonic() - repaired
        wait_stored(fault_db, channel, N, 240, "the rest of the burst")
        wait_until(lambda: health(again)["journalPending"] == 0, 60, message="journal drained")
    finally:
        again.stop()
    counts = count_rows(fault_db, channel)
    lost = len(acknowledged - stored_ids(fault_db, channel))
    ledger.add("5. data directory read-only mid-burst", sent=N, counts=counts, seconds=drained,
               seconds_label="acknowledged stored after the repair in",
               note=f"{len(acknowledged):,} of {N:,} acknowledged (journaled) before the filesystem turned "
                    f"read-only, {lost} of them lost; {failed:.0f} refused writes counted (reason read_only); the rest "
                    "were never acknowledged and came again from the source")
    assert lost == 0
    assert (counts.distinct, counts.duplicated) == (N, 0)
