"""Scale-out (docker-compose.scale.yml): three API replicas behind HAProxy on one TimescaleDB."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.compose import APPS_FILE, DATABASE_FILE, ROOT, ComposeStack, docker
from tests.support.servers import wait_until

# Generous: a cold machine builds the images inside the first fixture that needs them (minutes, not a hang).
pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]

SCALE_FILE = Path("tools/compose/docker-compose.scale.yml")
REPLICAS = 3
CHANNEL = "-1001000000777"


def build_loadbalancer(images: dict[str, str], tag: str) -> str:
    image = f"tradingsystem/loadbalancer:{tag}"
    argv = ["docker", "build", "--network", "host", "-t", image]
    if images.get("BASE_IMAGE"):
        argv += ["--build-arg", f"BASE_IMAGE={images['BASE_IMAGE']}"]
    result = subprocess.run([*argv, str(ROOT / "deploy" / "loadbalancer")], capture_output=True, text=True,
                            timeout=900, check=False, env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert result.returncode == 0, f"building {image} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return image


def scaled_compose(stack: ComposeStack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = ["docker", "compose", "-f", str(APPS_FILE), "-f", str(SCALE_FILE), *args]
    result = subprocess.run(argv, cwd=stack.root, env=stack.env, capture_output=True, text=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, f"{' '.join(argv)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def replicas(stack: ComposeStack) -> list[str]:
    found = docker("ps", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={stack.name}-apps",
                   "--filter", "label=com.docker.compose.service=tp-capital-api")
    return sorted(found.stdout.split())


def health(container: str) -> str:
    state = json.loads(docker("inspect", container).stdout)[0]["State"]
    return str(state.get("Health", {}).get("Status", state.get("Status")))


@pytest.fixture(scope="module")
def scaled(images: dict[str, str]) -> Iterator[ComposeStack]:
    stack = ComposeStack.create(images)
    try:
        build_loadbalancer(images, stack.env["IMAGE_TAG"])
        stack.compose(DATABASE_FILE, "up", "-d")
        stack.wait_healthy(("timescaledb",))
        scaled_compose(stack, "up", "-d", "tp-capital-api", "loadbalancer")
        wait_until(lambda: len(replicas(stack)) == REPLICAS and all(health(c) == "healthy" for c in replicas(stack))
                   and health(stack.container("loadbalancer")) == "healthy", 300, interval=1,
                   message=f"{REPLICAS} healthy replicas and a healthy load balancer")
        # The proxy marks a replica up after its first passing check (every 2 s).
        wait_until(lambda: httpx.get(stack.url("api", "/health"), timeout=5, trust_env=False).status_code == 200,
                   60, interval=0.5, message="the API through the load balancer")
        yield stack
    finally:
        stack.destroy()


def replica_metrics(container: str) -> dict[str, float]:
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:4005/metrics', timeout=5).read().decode())"
    text = docker("exec", container, "python", "-c", script).stdout
    wanted = ("tpcapital_messages_received_total", "tpcapital_messages_stored_total", "tpcapital_duplicate_messages_total")
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


def message(message_id: int) -> dict[str, Any]:
    text = f"Swing Trade\nAtivo: VALE3\nCompra: {50 + message_id % 40},10 a {50 + message_id % 40},40\nAlvo 1: 99,00\nStop: 40,00"
    return {"channelId": CHANNEL, "messageId": message_id, "timestamp": f"2026-01-05T10:{message_id % 60:02d}:00Z",
            "text": text, "source": "user", "chatTitle": "Scale test"}


def test_migrations_ran_once_under_the_advisory_lock(scaled: ComposeStack) -> None:
    migrations = sorted(p.name.split("_", 1)[0]
                        for p in (ROOT / "src/tradingsystem/migrations/tp_capital").glob("*.sql"))
    rows = scaled.psql("SELECT version FROM tp_capital.schema_migrations ORDER BY version").split()
    assert rows == migrations
    applied = {}
    for container in replicas(scaled):
        logs = docker("logs", container)
        applied[container] = len(re.findall(r'"message":\s*"Migration applied"', logs.stdout + logs.stderr))
    # One replica took the lock and applied every migration; the others waited, then found nothing to do.
    assert sorted(applied.values()) == [0] * (REPLICAS - 1) + [len(migrations)], applied


def test_concurrent_deliveries_to_different_replicas_store_each_message_once(scaled: ComposeStack) -> None:
    before = {c: replica_metrics(c) for c in replicas(scaled)}
    ids = list(range(1, 91))
    headers = {"X-Gateway-Token": scaled.env["GATEWAY_SECRET_TOKEN"]}
    with httpx.Client(base_url=scaled.url("api", ""), headers=headers, timeout=30, trust_env=False) as client:
        def post(message_id: int) -> dict[str, Any]:
            response = client.post("/ingest", json=message(message_id))
            assert response.status_code == 200, response.text
            return dict(response.json())

        # Each message three times at once: the proxy's round robin hands the copies to different replicas.
        with ThreadPoolExecutor(max_workers=9) as pool:
            answers = list(pool.map(post, [i for i in ids for _ in range(REPLICAS)]))
        stored = [a["messageId"] for a in answers if a["stored"]]
        assert sorted(stored) == ids
        assert sum(1 for a in answers if a.get("reason") == "duplicate") == 2 * len(ids)

        # The same batch at once to the replicas: ordered locks, no deadlock, each message once.
        batch = {"messages": [message(i) for i in range(200, 260)]}
        with ThreadPoolExecutor(max_workers=REPLICAS) as pool:
            results = list(pool.map(lambda _: client.post("/ingest/batch", json=batch), range(REPLICAS)))
        assert all(r.status_code == 200 for r in results), [r.text for r in results]
        stored_in_batches = [row["messageId"] for r in results for row in r.json()["results"] if row["stored"]]
        assert sorted(stored_in_batches) == list(range(200, 260))

    total = len(ids) + 60
    assert scaled.psql(f"SELECT count(*) FROM tp_capital.messages WHERE channel_id = '{CHANNEL}'") == str(total)
    assert scaled.psql("SELECT count(*) FROM (SELECT channel_id, message_id FROM tp_capital.messages "
                       "GROUP BY 1, 2 HAVING count(*) > 1) d") == "0"
    assert scaled.psql(f"SELECT count(*) FROM tp_capital.signals WHERE channel_id = '{CHANNEL}'") == str(total)

    after = {c: replica_metrics(c) for c in replicas(scaled)}
    received = {c: after[c]["tpcapital_messages_received_total"] - before[c]["tpcapital_messages_received_total"]
                for c in after}
    assert all(count > 0 for count in received.values()), f"a replica received nothing: {received}"
    assert sum(received.values()) == REPLICAS * total
    assert sum(after[c]["tpcapital_messages_stored_total"] - before[c]["tpcapital_messages_stored_total"]
               for c in after) == total
