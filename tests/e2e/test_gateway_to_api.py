"""The gateway and the real TP Capital API together: import, replay, outage and re-drive, exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import ProcessServer, ThreadServer, tradingsystem_argv, wait_until
from tradingsystem.core.embedded import free_port

TOKEN = "e2e-gateway-token-42"
SAMPLE = Path(__file__).resolve().parents[2] / "src/tradingsystem/gateway/data/sample_export.json"


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tradingsystem.tpcapital.app import build_app

    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", TOKEN)
    server = ThreadServer(build_app(database_url)).start()
    yield server
    server.stop()


def gateway_env(tmp_path: Path, api_url: str, **extra: str) -> dict[str, str]:
    return {"GATEWAY_SECRET_TOKEN": TOKEN, "API_ENDPOINT": f"{api_url}/ingest", "GATEWAY_DATA_DIR": str(tmp_path / "gw"),
            "TELEGRAM_API_ID": "", "TELEGRAM_API_HASH": "", "TELEGRAM_INGESTION_BOT_TOKEN": "", **extra}


def expected_payloads() -> int:
    from tradingsystem.gateway.export import TelegramExport

    return sum(1 for _ in TelegramExport(SAMPLE, source="import").payloads())


def test_import_delivers_once_and_reports(api: ThreadServer, tmp_path: Path) -> None:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **gateway_env(tmp_path, api.url)}
    first = subprocess.run(tradingsystem_argv("gateway", "import", str(SAMPLE)), env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    total = expected_payloads()
    assert f"delivered: {total}  duplicate: 0" in first.stdout
    skipped = json.loads(SAMPLE.read_text())["messages"]
    assert "skipped: " in first.stdout and len(skipped) >= total
    second = subprocess.run(tradingsystem_argv("gateway", "import", str(SAMPLE)), env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0
    assert f"delivered: 0  duplicate: {total}" in second.stdout
    with httpx.Client(base_url=api.url) as client:
        bots = {b["source"]: b["messages"] for b in client.get("/bots").json()["data"]}
        assert bots["import"] == total
        signals = client.get("/signals").json()
        assert signals["count"] >= 5
        assert all(s["source"] == "import" and s["channel"] == "-1001649127710" for s in signals["data"])


def test_import_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    # The CLI's error box wraps at the terminal width: a long temporary path could split the words checked.
    result = subprocess.run(tradingsystem_argv("gateway", "import", str(tmp_path / "nope.json")),
                            env={"PATH": "/usr/bin:/bin", "GATEWAY_SECRET_TOKEN": TOKEN, "COLUMNS": "1000"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "does not exist" in result.stdout + result.stderr


def test_replay_flows_into_signals(api: ThreadServer, tmp_path: Path) -> None:
    port = free_port()
    env = gateway_env(tmp_path, api.url, GATEWAY_PORT=str(port), TELEGRAM_REPLAY_FILE=str(SAMPLE),
                      REPLAY_INTERVAL_MS="5")
    gateway = ProcessServer(tradingsystem_argv("serve", "gateway"), env, port, tmp_path / "gw.log").start()
    try:
        gateway.wait_healthy(60)
        total = expected_payloads()
        with httpx.Client(base_url=api.url) as client:
            wait_until(lambda: client.get("/bots").json()["data"][4]["messages"] == total, 60,
                       message="every replayed message to be stored")
            assert client.get("/signals").json()["count"] >= 5
        health = httpx.get(gateway.url + "/health").json()
        assert health["telegram"] == "replay" and health["journalPending"] == 0
        assert health["failureQueue"] == {"lines": 0, "bytes": 0}
        metrics = httpx.get(gateway.url + "/metrics").text
        assert f"telegram_messages_published_total {float(total)}" in metrics
    finally:
        gateway.stop()
    assert "Graceful shutdown completed" in gateway.output()


def test_api_outage_goes_to_the_queue_and_is_redriven(database_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tradingsystem.tpcapital.app import build_app

    api_port, gw_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = gateway_env(tmp_path, api_url, GATEWAY_PORT=str(gw_port), TELEGRAM_REPLAY_FILE=str(SAMPLE),
                      REPLAY_INTERVAL_MS="1", MAX_RETRIES="1", BASE_RETRY_DELAY_MS="20")
    gateway = ProcessServer(tradingsystem_argv("serve", "gateway"), env, gw_port, tmp_path / "gw.log").start()
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", TOKEN)
    server: ThreadServer | None = None
    try:
        gateway.wait_healthy(60)
        total = expected_payloads()

        def queued() -> int:
            return int(httpx.get(gateway.url + "/health").json()["failureQueue"]["lines"])

        wait_until(lambda: queued() == total, 60, message="the whole replay to land in the failure queue")
        queue_file = tmp_path / "gw" / "failure-queue.jsonl"
        line = json.loads(queue_file.read_text().splitlines()[0])
        assert {"failedAt", "attempts", "lastError", "channelId", "messageId"} <= set(line)
        assert line["attempts"] >= 2  # the first try and MAX_RETRIES=1 retry, plus any re-drive
        assert 'telegram_publish_failures_total{reason="max_retries"}' in httpx.get(gateway.url + "/metrics").text

        server = ThreadServer(build_app(database_url), port=api_port).start()
        wait_until(lambda: queued() == 0, 90, message="the gateway to re-drive its queue by itself")
        with httpx.Client(base_url=api_url) as client:
            stored = client.get("/forwarded-messages", params={"limit": 1000}).json()["data"]
            assert len(stored) == total
            assert len({(m["message_id"], m["kind"], m["edit_date"]) for m in stored}) == total
    finally:
        gateway.stop()
        if server is not None:
            server.stop()
