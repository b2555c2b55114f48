"""Case 1: the gateway killed with SIGKILL in the middle of an import and of a burst, then restarted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fault.harness import (
    GATEWAY_TOKEN,
    Ledger,
    N,
    Services,
    channel_id,
    count_rows,
    health,
    journaled_ids,
    kill9,
    stored,
    stored_ids,
    wait_stored,
    write_export,
)
from tests.support.servers import ProcessServer, wait_until

pytestmark = pytest.mark.fault


def drain_journal(services: Services, data: Path, api: ProcessServer, channel: str, fault_db: str,
                  acknowledged: set[int]) -> float:
    """Start the gateway with no source on the killed one's data directory: it delivers what its journal holds.
    Returns the seconds from the start until every acknowledged message is stored and nothing is pending."""
    started = time.monotonic()
    gateway = services.gateway(data, api.url, name="gateway-restarted")
    gateway.wait_healthy(90)
    wait_until(lambda: acknowledged <= stored_ids(fault_db, channel) and health(gateway)["journalPending"] == 0,
               120, interval=0.2, message="every acknowledged message stored after the restart")
    took = time.monotonic() - started
    gateway.stop()
    return took


def test_kill_9_mid_import_then_restart_loses_and_duplicates_nothing(
        services: Services, shared_api: ProcessServer, fault_db: str, fault_dir: Path, ledger: Ledger) -> None:
    number, data = 1910000001, fault_dir / "case1-import"
    channel = channel_id(number)
    export = write_export(fault_dir / "case1-import.json", number, N)
    env = {"GATEWAY_DATA_DIR": str(data), "API_ENDPOINT": f"{shared_api.url}/ingest",
           "GATEWAY_SECRET_TOKEN": GATEWAY_TOKEN}
    first = services.command(["gateway", "import", str(export)], env, "import-killed")
    try:
        wait_until(lambda: stored(fault_db, channel) >= N // 5 or first.poll() is not None, 120, interval=0.02,
                   message="the import under way")
    finally:
        first.kill()
        first.wait(30)
    before = stored(fault_db, channel)
    assert 0 < before < N, f"the kill must land mid-import ({before} of {N} stored)"
    acknowledged = journaled_ids(data, channel) | stored_ids(fault_db, channel)
    assert len(acknowledged) > before, "the import had journaled messages the API had not stored yet"
    # the gateway restarted on the same directory delivers what the killed import journaled
    recovery = drain_journal(services, data, shared_api, channel, fault_db, acknowledged)
    # the operator runs the import again: the rest arrives, what is there already is a duplicate
    again = services.command(["gateway", "import", str(export)], env, "import-again")
    assert again.wait(300) == 0
    assert stored(fault_db, channel) == N
    counts = count_rows(fault_db, channel)
    ledger.add("1. gateway kill -9 mid-import, restart", sent=N, counts=counts, seconds=recovery,
               seconds_label="journal drained in",
               note=f"killed at {before:,} stored, {len(acknowledged):,} journaled; import re-run")
    assert (counts.distinct, counts.duplicated) == (N, 0)


def test_kill_9_mid_burst_then_restart_loses_and_duplicates_nothing(
        services: Services, shared_api: ProcessServer, fault_db: str, fault_dir: Path, ledger: Ledger) -> None:
    number, data = 1910000002, fault_dir / "case1-burst"
    channel = channel_id(number)
    export = write_export(fault_dir / "case1-burst.json", number, N)
    gateway = services.gateway(data, shared_api.url, name="gateway-killed", TELEGRAM_REPLAY_FILE=str(export))
    try:
        wait_until(lambda: stored(fault_db, channel) >= N // 4, 180, interval=0.05, message="the burst under way")
    finally:
        kill9(gateway)
    before = stored(fault_db, channel)
    assert before < N, f"the kill must land mid-burst ({before} of {N} stored)"
    acknowledged = journaled_ids(data, channel) | stored_ids(fault_db, channel)
    recovery = drain_journal(services, data, shared_api, channel, fault_db, acknowledged)
    # the source hands over again what it was never acknowledged (the replay starts over)
    again = services.gateway(data, shared_api.url, name="gateway-resumed", TELEGRAM_REPLAY_FILE=str(export))
    try:
        wait_stored(fault_db, channel, N, 180, "the rest of the burst")
        wait_until(lambda: health(again)["journalPending"] == 0, 60, message="journal drained")
    finally:
        again.stop()
    counts = count_rows(fault_db, channel)
    ledger.add("1. gateway kill -9 mid-burst, restart", sent=N, counts=counts, seconds=recovery,
               seconds_label="journal drained in",
               note=f"killed at {before:,} stored, {len(acknowledged):,} acknowledged (journaled)")
    assert (counts.distinct, counts.duplicated) == (N, 0)
