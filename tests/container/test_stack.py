"""The compose stack started as an operator starts it: health, gateway to signals, hardening, faults, data kept."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.support.compose import (
    APPS_FILE,
    DATABASE_FILE,
    GATEWAY_SECRETS,
    SAMPLE,
    ComposeStack,
    docker,
    gateway_health,
    inspect,
    start_gateway,
    write_export,
)
from tests.support.servers import wait_until

# The first test of a run also waits for the images to build (minutes on a cold machine).
pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

APP_SERVICES = ("tp-capital-api", "workspace")
SERVICES = ("timescaledb", *APP_SERVICES)


def get(stack: ComposeStack, name: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(stack.url(name, path), params=params, timeout=10, trust_env=False)  # type: ignore[arg-type]


def stored_messages(stack: ComposeStack, channel: str) -> tuple[int, int]:
    """(rows, distinct message keys) of one channel in the database itself."""
    rows, distinct = stack.psql(
        "SELECT count(*), count(DISTINCT (message_id, kind, edit_key)) FROM tp_capital.messages "
        f"WHERE channel_id = '{channel}'"
    ).split("|")
    return int(rows), int(distinct)


def test_every_container_is_healthy_by_dockers_own_status(stack: ComposeStack) -> None:
    for service in SERVICES:
        state = inspect(stack.container(service))["State"]
        assert state["Running"] is True, service
        assert state["Health"]["Status"] == "healthy", (service, state["Health"]["Log"][-1:])
    for name, path in (("api", "/health"), ("workspace", "/health")):
        body = get(stack, name, path).json()
        assert body["status"] == "healthy" and body["database"] == "connected", body


def test_a_message_from_the_gateway_on_the_host_becomes_a_signal_served_by_the_container(
    stack: ComposeStack, gateway_dir: Path
) -> None:
    from tradingsystem.gateway.export import TelegramExport

    total = sum(1 for _ in TelegramExport(SAMPLE, source="replay").payloads())
    gateway = start_gateway(stack, gateway_dir, SAMPLE, REPLAY_INTERVAL_MS="5")
    try:
        wait_until(lambda: stored_messages(stack, "-1001649127710")[0] == total, 90,
                   message="every replayed message stored by the container API")
        signals = get(stack, "api", "/signals", limit=100).json()
        assert signals["count"] >= 5
        assert {s["channel"] for s in signals["data"]} == {"-1001649127710"}
        assert any(s["asset"] == "BOVAW32" for s in signals["data"])
        health = gateway_health(gateway)
        assert health["journalPending"] == 0 and health["failureQueue"] == {"lines": 0, "bytes": 0}
    finally:
        gateway.stop()


def test_the_tp_capital_tables_are_hypertables(stack: ComposeStack) -> None:
    assert stack.psql("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"), "no timescaledb extension"
    found = set(stack.psql(
        "SELECT hypertable_schema || '.' || hypertable_name FROM timescaledb_information.hypertables"
    ).split())
    assert {"tp_capital.messages", "tp_capital.signal_events"} <= found


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_containers_run_unprivileged_on_a_read_only_root(stack: ComposeStack, service: str) -> None:
    container = stack.container(service)
    data = inspect(container)
    assert data["Config"]["User"] == "10001:10001"
    host = data["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    # What the process really has, not only what was asked for.
    assert docker("exec", container, "id", "-u").stdout.strip() == "10001"
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    caps = {line.split(":")[0]: line.split(":")[1].strip() for line in status.splitlines()
            if line.startswith(("CapEff", "CapPrm", "CapBnd", "NoNewPrivs"))}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000", caps
    assert caps["NoNewPrivs"] == "1"
    write = docker("exec", container, "python", "-c", "open('/app/probe', 'w')", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    # /tmp is the one writable place, a tmpfs.
    assert docker("exec", container, "python", "-c", "open('/tmp/probe', 'w').write('x')").returncode == 0


@pytest.mark.parametrize("service", APP_SERVICES)
def test_no_telegram_variable_or_gateway_secret_inside(stack: ComposeStack, service: str) -> None:
    env = dict(line.split("=", 1) for line in docker("exec", stack.container(service), "env").stdout.splitlines()
               if "=" in line)
    assert not [key for key in env if key.upper().startswith("TELEGRAM")]
    # The compose environment held these (as a shared .env would); none of their values may be inside.
    values = "\n".join(env.values())
    for key in GATEWAY_SECRETS:
        assert stack.env[key] not in values, key
    for key in ("GATEWAY_DATA_DIR", "API_ENDPOINT", "FAILURE_QUEUE_PATH"):
        assert key not in env
    if service == "workspace":
        assert "GATEWAY_SECRET_TOKEN" not in env and stack.env["GATEWAY_SECRET_TOKEN"] not in values
    else:
        # The API's half of the shared ingest token, nothing else of the gateway's.
        assert env["GATEWAY_SECRET_TOKEN"] == stack.env["GATEWAY_SECRET_TOKEN"]


@pytest.mark.parametrize("service", SERVICES)
def test_logs_are_rotated_json_files(stack: ComposeStack, service: str) -> None:
    log_config = inspect(stack.container(service))["HostConfig"]["LogConfig"]
    assert log_config == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}


def test_killed_api_is_restarted_and_the_gateway_redrives_exactly_once(stack: ComposeStack,
                                                                       gateway_dir: Path) -> None:
    channel_id, count = 1700000001, 40
    channel = f"-100{channel_id}"
    export = write_export(gateway_dir / "export.json", channel_id, count)
    container = stack.container("tp-capital-api")
    before = inspect(container)["RestartCount"]
    gateway = start_gateway(stack, gateway_dir, export, REPLAY_INTERVAL_MS="250", MAX_RETRIES="1",
                            BASE_RETRY_DELAY_MS="200", API_TIMEOUT_MS="2000")
    try:
        wait_until(lambda: stored_messages(stack, channel)[0] >= 5, 60, message="the first deliveries")
        # The container's main process, killed from the host: a crash, not a `docker stop`/`kill`
        # (after which the restart policy would rightly stay out of it).
        os.kill(inspect(container)["State"]["Pid"], signal.SIGKILL)
        wait_until(lambda: inspect(container)["RestartCount"] > before, 60, message="the restart policy")
        assert inspect(container)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        stack.wait_healthy(("tp-capital-api",), 180)

        def settled() -> bool:
            health = gateway_health(gateway)
            queue = health["failureQueue"]
            assert isinstance(queue, dict)
            return health["journalPending"] == 0 and queue["lines"] == 0 and \
                stored_messages(stack, channel)[0] >= count

        wait_until(settled, 180, interval=0.5, message="the gateway to deliver and re-drive every message")
        metrics = httpx.get(gateway.url + "/metrics", timeout=5, trust_env=False).text
    finally:
        gateway.stop()
    assert stored_messages(stack, channel) == (count, count)
    # The outage was real for the gateway: it saw failures while the API was down.
    assert "telegram_publish_failures_total" in metrics


def test_database_outage_answers_503_never_500_and_recovers_alone(stack: ComposeStack) -> None:
    endpoints = [("api", "/health"), ("api", "/signals"), ("workspace", "/health"), ("workspace", "/api/items")]
    for name, path in endpoints:
        assert get(stack, name, path).status_code == 200, (name, path)
    seen: dict[tuple[str, str], set[int]] = {endpoint: set() for endpoint in endpoints}
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            for name, path in endpoints:
                try:
                    seen[(name, path)].add(get(stack, name, path).status_code)
                except httpx.HTTPError:
                    seen[(name, path)].add(-1)  # no answer at all: as wrong as a 500
            time.sleep(0.5)

    database = stack.container("timescaledb")
    docker("stop", database)
    stopped_at = time.monotonic()
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        # Both services notice within the outage and say so with 503.
        wait_until(lambda: all(503 in codes for codes in seen.values()), 20, interval=0.2,
                   message="every endpoint to answer 503 while the database is down")
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped_at)))
    finally:
        docker("start", database)
    try:
        def recovered() -> bool:
            return all(get(stack, name, path).status_code == 200 for name, path in endpoints)

        wait_until(recovered, 120, interval=0.5, message="both APIs to recover without manual action")
    finally:
        stop.set()
        prober.join(10)
    for endpoint, codes in seen.items():
        assert codes <= {200, 503}, (endpoint, codes)
    stack.wait_healthy(timeout=180)


def test_data_survive_down_and_up_in_the_named_volume(stack: ComposeStack) -> None:
    before = get(stack, "api", "/signals", limit=1000).json()
    rows = stack.psql("SELECT count(*) FROM tp_capital.messages")
    assert int(rows) > 0
    stack.down()
    assert stack.running() == []
    volume = json.loads(docker("volume", "inspect", stack.volume).stdout)[0]
    assert volume["Labels"]["com.docker.compose.project"] == f"{stack.name}-database"
    stack.compose(DATABASE_FILE, "up", "-d")
    stack.compose(APPS_FILE, "up", "-d")
    stack.wait_healthy()
    assert stack.psql("SELECT count(*) FROM tp_capital.messages") == rows
    after = get(stack, "api", "/signals", limit=1000).json()
    assert after["count"] == before["count"] and after["data"] == before["data"]
