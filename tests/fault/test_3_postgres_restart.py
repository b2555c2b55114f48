"""Case 3: PostgreSQL restarted in the middle of a burst: both APIs answer 503 (never 500) and recover alone."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fault.conftest import create_owner
from tests.fault.harness import (
    DB_PASSWORD,
    DB_ROLE,
    GATEWAY_TOKEN,
    Ledger,
    N,
    Services,
    channel_id,
    count_rows,
    health,
    payloads,
    stored,
    write_export,
)
from tests.support.pg import PgCluster
from tests.support.servers import ProcessServer, wait_until
from tradingsystem.core.embedded import free_port

pytestmark = pytest.mark.fault


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL of this test alone: it is stopped and started under the services' feet."""
    root = Path(tempfile.mkdtemp(prefix="ts-fault-pg-"))
    cluster = PgCluster(root, free_port())
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


class Poller(threading.Thread):
    """Calls both APIs' reads and writes without a pause and counts every status per service."""

    def __init__(self, api: ProcessServer, workspace: ProcessServer) -> None:
        super().__init__(daemon=True)
        self.api, self.workspace = api, workspace
        self.statuses: dict[str, Counter[int]] = {"api": Counter(), "workspace": Counter()}
        self.last: dict[str, int] = {}
        self.bodies_5xx: list[str] = []
        self.halt = threading.Event()

    def _call(self, service: str, client: httpx.Client, method: str, path: str, **kwargs: object) -> None:
        try:
            resp = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self.statuses[service][0] += 1  # no answer at all: never expected, the APIs stay up
            self.bodies_5xx.append(f"{service} {method} {path}: {exc!r}")
            return
        self.statuses[service][resp.status_code] += 1
        self.last[service] = resp.status_code
        if resp.status_code >= 500 and resp.status_code != 503:
            self.bodies_5xx.append(f"{service} {method} {path}: {resp.status_code} {resp.text[:300]}")

    def run(self) -> None:
        probe = payloads(1930000009, range(1, 1_000_000))
        with httpx.Client(base_url=self.api.url, timeout=30, trust_env=False,
                          headers={"X-Gateway-Token": GATEWAY_TOKEN}) as api, \
                httpx.Client(base_url=self.workspace.url, timeout=30, trust_env=False) as workspace:
            n = 0
            while not self.halt.is_set():
                self._call("api", api, "GET", "/signals")
                self._call("api", api, "POST", "/ingest", json=probe[n])
                self._call("api", api, "GET", "/health")
                self._call("workspace", workspace, "GET", "/api/items")
                self._call("workspace", workspace, "POST", "/api/items",
                           json={"title": f"item {n}", "category": "gestao-riscos", "priority": "medium"})
                self._call("workspace", workspace, "GET", "/health")
                n += 1
                time.sleep(0.02)


def test_postgres_restart_mid_burst_is_503_never_500_and_recovers_alone(
        own_cluster: PgCluster, services: Services, fault_dir: Path, ledger: Ledger) -> None:
    url = create_owner(own_cluster, own_cluster.create_database(), DB_ROLE, DB_PASSWORD)
    number = 1930000001
    channel = channel_id(number)
    export = write_export(fault_dir / "case3.json", number, N)
    api = services.api(url, name="api-pg-restart")
    workspace = services.workspace(url, name="workspace-pg-restart")
    api.wait_healthy(90, path="/health")
    workspace.wait_healthy(90, path="/health")
    gateway = services.gateway(fault_dir / "case3", api.url, name="gateway-pg-restart",
                               TELEGRAM_REPLAY_FILE=str(export))
    poller = Poller(api, workspace)
    try:
        wait_until(lambda: stored(url, channel) >= N // 5, 180, interval=0.05, message="the burst under way")
        poller.start()
        own_cluster.stop()  # immediate: what a crash or an operator's restart does to the connections
        down_at = time.monotonic()
        wait_until(lambda: poller.last.get("api") == 503 and poller.last.get("workspace") == 503, 60,
                   message="both APIs answering 503 while the database is away")
        own_cluster.start()
        up_at = time.monotonic()
        wait_until(lambda: poller.last.get("api") == 200 and poller.last.get("workspace") == 200, 120,
                   message="both APIs answering again")
        recovered = time.monotonic() - up_at
        wait_until(lambda: stored(url, channel) == N and health(gateway)["journalPending"] == 0
                   and health(gateway)["failureQueue"]["lines"] == 0, 240, interval=0.2,
                   message="the whole burst stored after the restart")
        drained = time.monotonic() - up_at
    finally:
        poller.halt.set()
        if poller.is_alive():
            poller.join(60)
        gateway.stop()
    for server in (api, workspace):
        assert httpx.get(server.url + "/health", timeout=10, trust_env=False).status_code == 200
    counts = count_rows(url, channel)
    seen = {service: dict(sorted(c.items())) for service, c in poller.statuses.items()}
    ledger.add("3. PostgreSQL restarted mid-burst", sent=N, counts=counts, seconds=drained,
               seconds_label="drained in",
               note=f"down {up_at - down_at:.1f} s; APIs answered again {recovered:.1f} s after the start; "
                    f"statuses seen: TP Capital {seen['api']}, Workspace {seen['workspace']}")
    assert not poller.bodies_5xx, poller.bodies_5xx[:5]
    assert poller.statuses["api"][503] > 0 and poller.statuses["workspace"][503] > 0
    assert (counts.distinct, counts.duplicated) == (N, 0)
