"""Case 2: the TP Capital API stopped (SIGTERM, and separately SIGKILL) for 20 s in the middle of a burst."""

from __future__ import annotations

import signal
import time
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
    stored,
    write_export,
)
from tests.support.servers import wait_until
from tradingsystem.core.embedded import free_port

pytestmark = pytest.mark.fault

OUTAGE_S = 20.0


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_api_stopped_for_20_s_mid_burst_is_queued_and_redriven(
        how: signal.Signals, services: Services, fault_db: str, fault_dir: Path, ledger: Ledger) -> None:
    number = 1920000001 if how == signal.SIGTERM else 1920000002
    channel = channel_id(number)
    export = write_export(fault_dir / f"case2-{how.name}.json", number, N)
    api = services.api(fault_db, port=free_port(), name=f"api-{how.name}")
    api.wait_healthy(90, path="/health")
    gateway = services.gateway(fault_dir / f"case2-{how.name}", api.url, name=f"gateway-{how.name}",
                               TELEGRAM_REPLAY_FILE=str(export))
    try:
        wait_until(lambda: stored(fault_db, channel) >= N // 5, 180, interval=0.05, message="the burst under way")
        api.signal(how)
        api.wait(60)
        api.stop()
        at_stop = stored(fault_db, channel)
        assert at_stop < N, "the API must stop mid-burst"
        # the outage lasts 20 s whatever the gateway does; meanwhile it must keep journaling and queue
        peak_queue, peak_pending, deadline = 0, 0, time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            body = health(gateway)
            peak_queue = max(peak_queue, body["failureQueue"]["lines"])
            peak_pending = max(peak_pending, body["journalPending"])
            time.sleep(0.5)
        body = health(gateway)
        assert body["status"] == "degraded" and "API unreachable" in body.get("warnings", []), body
        assert peak_queue > 0, "messages the API could not take go to the failure queue"
        assert metric(gateway, 'telegram_publish_failures_total{reason="max_retries"}') > 0
        received = metric(gateway, f'telegram_messages_received_total{{channel_id="{channel}"}}')
        back = time.monotonic()
        api.start()  # the same port: the gateway's endpoint is unchanged
        api.wait_healthy(90, path="/health")
        try:
            wait_until(lambda: stored(fault_db, channel) == N and health(gateway)["failureQueue"]["lines"] == 0
                       and health(gateway)["journalPending"] == 0, 90, interval=0.2,
                       message="the queue and the journal re-driven")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {stored(fault_db, channel)} stored, gateway {health(gateway)}, "
                                 f"log tail {gateway.output()[-3000:]}") from None
        drain = time.monotonic() - back
        assert health(gateway)["status"] == "healthy"
    finally:
        gateway.stop()
        api.stop()
    counts = count_rows(fault_db, channel)
    ledger.add(f"2. API {how.name} for 20 s mid-burst", sent=N, counts=counts, seconds=drain,
               seconds_label="drained in",
               note=f"stopped at {at_stop:,} stored; {received:,.0f} journaled by the end of the outage; "
                    f"failure queue peak {peak_queue:,} lines, journal pending peak {peak_pending:,}")
    assert (counts.distinct, counts.duplicated) == (N, 0)
