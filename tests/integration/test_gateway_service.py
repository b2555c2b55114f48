"""The gateway process: health states and fields, metrics at startup, full disk, kill -9, registry, queue commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.support.fake_bot_api import FakeBotApi
from tests.support.fs import TinyFilesystem, damage_pages, fill
from tests.support.gateway_sources import wait_until as wait_for
from tests.support.ingest_server import IngestStandIn
from tests.support.servers import ProcessServer, ThreadServer, wait_until
from tradingsystem.core.embedded import free_port
from tradingsystem.gateway.cli import gateway_app
from tradingsystem.gateway.failure_queue import FailureQueue
from tradingsystem.gateway.journal import Journal, JournalFullError
from tradingsystem.gateway.publisher import IngestClient
from tradingsystem.gateway.service import ChannelRegistry, GatewayService, create_gateway_app
from tradingsystem.gateway.settings import GatewaySettings
from tradingsystem.gateway.types import CursorReader, IngestPayload, MessageSink, Monitored, Source, SourceState

CONTRACT_METRICS = (
    "telegram_connection_status",
    "telegram_messages_received_total",
    "telegram_messages_published_total",
    'telegram_publish_failures_total{reason="max_retries"}',
    "telegram_retry_attempts_total",
    "telegram_failure_queue_size",
    "telegram_failure_queue_bytes",
    "telegram_journal_pending",
    "telegram_publish_duration_seconds_bucket",
)


def payload(channel: str, message_id: int) -> dict[str, Any]:
    return {"channelId": channel, "messageId": message_id, "timestamp": "2025-10-24T19:30:39Z",
            "text": f"Ativo: PETR4 Compra: 30,10 Alvo 1: 31,00 ({message_id})", "kind": "new", "editDate": None,
            "photos": [], "source": "bot", "chatTitle": "TP Capital", "forwardedFrom": None}


class ScriptedSource:
    """A source the test drives: it hands messages to the service's real sink and reports a state."""

    def __init__(self, name: str, state: SourceState = "connected") -> None:
        self.name = name
        self._state: SourceState = state
        self._sink: MessageSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def state(self) -> SourceState:
        return self._state

    def set_state(self, state: SourceState) -> None:
        self._state = state

    async def run(self, sink: MessageSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        await asyncio.Event().wait()

    def receive(self, message: IngestPayload) -> None:
        """Returns when the gateway says the message is durable (then Telegram would be acknowledged)."""
        wait_until(lambda: self._sink is not None, message=f"source {self.name} running")
        assert self._sink is not None and self._loop is not None
        asyncio.run_coroutine_threadsafe(self._sink(message), self._loop).result(timeout=30)


def settings_for(api: IngestStandIn, data_dir: Path, **extra: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "gateway_data_dir": data_dir,
        "api_endpoint": api.ingest_url,
        "gateway_secret_token": f"{api.token},next-token",
        "base_retry_delay_ms": 20,
        "max_retries": 3,
        "api_timeout_ms": 2000,
        "gateway_port": free_port(),
        **extra,
    }
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


class Gateway:
    """An in-process gateway served for real on loopback, with scripted sources."""

    def __init__(self, settings: GatewaySettings, sources: list[ScriptedSource]) -> None:
        def factory(_: GatewaySettings, __: Monitored, ___: CursorReader) -> list[Source]:
            return list(sources)

        self.service = GatewayService(settings, source_factory=factory)
        self.server = ThreadServer(create_gateway_app(self.service), settings.gateway_port)
        self.sources = {s.name: s for s in sources}

    def __enter__(self) -> Gateway:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def health(self) -> tuple[int, dict[str, Any]]:
        resp = httpx.get(self.server.url + "/health", timeout=5)
        return resp.status_code, resp.json()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.service.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


@pytest.fixture
def api() -> Iterator[IngestStandIn]:
    with IngestStandIn() as server:
        yield server


def clean_env(**values: str) -> dict[str, str]:
    """The test runner's environment without any gateway/Telegram configuration, plus `values`."""
    prefixes = ("TELEGRAM_", "GATEWAY_", "API_", "FAILURE_QUEUE_", "MAX_RETRIES", "BASE_RETRY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(values)
    return env


def gateway_process(tmp_path: Path, api: IngestStandIn, port: int, name: str = "gateway") -> ProcessServer:
    env = clean_env(GATEWAY_PORT=str(port), GATEWAY_DATA_DIR=str(tmp_path / "data"),
                    API_ENDPOINT=api.ingest_url, GATEWAY_SECRET_TOKEN=api.token, BASE_RETRY_DELAY_MS="20",
                    API_TIMEOUT_MS="2000")
    server = ProcessServer([sys.executable, "-m", "tradingsystem.gateway.service"], env, port,
                           tmp_path / f"{name}.log")
    # ProcessServer merges os.environ back in; drop what clean_env removed
    server.env = env
    return server


# -- process-level ---------------------------------------------------------------------------------------


def test_missing_token_is_fatal(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "tradingsystem.gateway.service"],
        env=clean_env(GATEWAY_DATA_DIR=str(tmp_path / "data"), GATEWAY_PORT=str(free_port())),
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(r["message"] == "FATAL: GATEWAY_SECRET_TOKEN is required" and r["level"] == "error" for r in lines)


def test_unconfigured_gateway_serves_health_live_and_every_metric(tmp_path: Path, api: IngestStandIn) -> None:
    gateway = gateway_process(tmp_path, api, free_port())
    gateway.start()
    try:
        gateway.wait_healthy()
        metrics = httpx.get(gateway.url + "/metrics", timeout=5).text
        for name in CONTRACT_METRICS:
            assert name in metrics, name
        assert "telegram_connection_status 0.0" in metrics
        assert 'telegram_publish_failures_total{reason="max_retries"} 0.0' in metrics
        resp = httpx.get(gateway.url + "/health", timeout=5)
        body = resp.json()
        assert resp.status_code == 503
        assert body["status"] == "unhealthy" and body["telegram"] == "not_configured"
        assert body["sources"] == {"user": "not_configured", "bot": "not_configured"}
        assert body["journalPending"] == 0 and body["failureQueue"] == {"lines": 0, "bytes": 0}
        assert isinstance(body["uptime"], int | float) and body["timestamp"].endswith("Z")
        assert "X-Correlation-Id" in resp.headers
        assert httpx.get(gateway.url + "/health/live", timeout=5).status_code == 200
        gateway.signal(signal.SIGTERM)
        assert gateway.wait() == 0
        assert "Graceful shutdown completed" in gateway.output()
    finally:
        gateway.stop()


def test_kill_9_during_a_burst_loses_nothing(tmp_path: Path, api: IngestStandIn) -> None:
    total = 2000  # backlogs go out as batches of up to 100 per channel: enough of them to kill mid-burst
    data = tmp_path / "data"
    with Journal(data / "journal.db").open() as journal:
        journal.append_many([payload(f"-100{n % 4}", n + 1) for n in range(total)])
    api.delay_s = 0.2  # slow enough that the kill lands in the middle of the burst
    port = free_port()
    first = gateway_process(tmp_path, api, port, "first")
    first.start()
    try:
        wait_until(lambda: api.distinct() >= 400, timeout=60, message="delivery under way")
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        first.wait()
    finally:
        first.stop()
    delivered_before_restart = api.distinct()
    assert delivered_before_restart < total, "the kill must land before the burst is over"
    api.delay_s = 0.0
    second = gateway_process(tmp_path, api, port, "second")
    second.start()
    try:
        second.wait_healthy(60)
        wait_until(lambda: api.distinct() == total, timeout=120, message="all of them after the restart")
        wait_until(lambda: httpx.get(second.url + "/health", timeout=5).json()["journalPending"] == 0,
                   message="journal drained")
    finally:
        second.stop()
    for n in range(4):
        ids = api.stored_ids(f"-100{n}")
        assert sorted(ids) == list(range(n + 1, total + 1, 4))


def test_a_malformed_journal_is_set_aside_and_what_it_still_holds_is_delivered(tmp_path: Path,
                                                                               api: IngestStandIn) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with Journal(data / "journal.db").open() as journal:
        journal.append_many([{**payload(f"-100{n % 2}", n), "text": "x" * 400} for n in range(1, 2001)])
    damage_pages(data / "journal.db")
    gateway = gateway_process(tmp_path, api, free_port())
    gateway.start()
    try:
        gateway.wait_healthy(60)
        [moved] = [p for p in data.iterdir() if p.name.startswith("journal.db.corrupt-") and "-" not in p.name[19:]]
        records = [json.loads(line) for line in gateway.output().splitlines() if line.startswith("{")]
        [damage] = [r for r in records if r["message"].startswith("Journal damaged")]
        assert damage["level"] == "error" and damage["moved_to"] == str(moved) and "malformed" in damage["error"]
        salvaged = damage["salvaged"]
        assert 1500 < salvaged < 2000
        wait_until(lambda: api.distinct() == salvaged, timeout=60, message="every salvaged message delivered")
        body = httpx.get(gateway.url + "/health", timeout=5).json()
        assert body["status"] == "unhealthy"  # no Telegram source here; the warning is there all the same
        assert any("Damaged journal set aside" in w and moved.name in w for w in body["warnings"])
        assert "telegram_journal_corrupt_total 1.0" in httpx.get(gateway.url + "/metrics", timeout=5).text
        for n in range(2):
            ids = api.stored_ids(f"-100{n}")
            assert ids == sorted(ids)  # the channel's order survives the salvage
    finally:
        gateway.stop()
    assert "Traceback" not in gateway.output()


def test_a_read_only_data_directory_is_one_fatal_line(tmp_path: Path, api: IngestStandIn) -> None:
    import subprocess

    with TinyFilesystem(tmp_path / "ro", size_kib=1024) as fs:
        data = fs.path / "data"
        with Journal(data / "journal.db").open() as journal:
            journal.append_sync(payload("-1001", 1))
        fs.remount(read_only=True)
        try:
            env = clean_env(GATEWAY_DATA_DIR=str(data), GATEWAY_PORT=str(free_port()),
                            GATEWAY_SECRET_TOKEN=api.token, API_ENDPOINT=api.ingest_url)
            result = subprocess.run([sys.executable, "-m", "tradingsystem.gateway.service"], env=env,
                                    cwd=tmp_path, capture_output=True, text=True, timeout=60)
        finally:
            fs.remount(read_only=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    fatal = [json.loads(line) for line in result.stdout.splitlines() if '"FATAL' in line]
    assert len(fatal) == 1 and fatal[0]["level"] == "error"
    assert fatal[0]["message"].startswith(f"FATAL: GATEWAY_DATA_DIR {data} ")
    assert "Read-only file system" in fatal[0]["message"]


async def test_a_dropped_bot_api_connection_never_puts_the_token_in_a_log_line(tmp_path: Path,
                                                                              api: IngestStandIn) -> None:
    from tradingsystem.core.logging import REDACTED

    bot_api = await FakeBotApi().start()
    port = free_port()
    env = clean_env(GATEWAY_PORT=str(port), GATEWAY_DATA_DIR=str(tmp_path / "data"), API_ENDPOINT=api.ingest_url,
                    GATEWAY_SECRET_TOKEN=api.token, TELEGRAM_INGESTION_BOT_TOKEN=bot_api.token,
                    TELEGRAM_BOT_API_URL=bot_api.base_url)
    gateway = ProcessServer([sys.executable, "-m", "tradingsystem.gateway.service"], env, port, tmp_path / "gw.log")
    gateway.env = env
    gateway.start()
    try:
        # the real aiogram bot long-polls the stand-in; then the server goes away under the open request
        await wait_for(lambda: bot_api.calls["getupdates"] >= 1, within=90, what="the bot polling")
        await asyncio.sleep(0.3)
        await bot_api.go_away()
        await wait_for(lambda: gateway.output().count("getUpdates failed") >= 2, within=30,
                       what="the failed polls logged")
        await bot_api.come_back()
        await wait_for(lambda: '"Telegram bot connected"' in gateway.output().split("getUpdates failed")[-1],
                       within=30, what="the bot back")
    finally:
        gateway.stop()
        await bot_api.stop()
    lines = [line for line in gateway.output().splitlines() if line.strip()]
    assert lines and not [line for line in lines if bot_api.token in line]
    assert bot_api.token.split(":")[1] not in gateway.output()
    failures = [json.loads(line) for line in lines if '"getUpdates failed"' in line]
    assert any(REDACTED in f["error"] for f in failures), failures  # aiohttp names the URL: /bot[REDACTED]/…


# -- in-process ------------------------------------------------------------------------------------------


def test_health_follows_the_sources(tmp_path: Path, api: IngestStandIn) -> None:
    user = ScriptedSource("user", "disconnected")
    bot = ScriptedSource("bot", "connected")
    with Gateway(settings_for(api, tmp_path / "data"), [user, bot]) as gw:
        status, body = gw.health()
        assert (status, body["status"], body["telegram"]) == (200, "healthy", "connected")
        assert body["sources"] == {"user": "disconnected", "bot": "connected"}
        wait_until(lambda: gw.metric("telegram_connection_status") == 1)

        bot.set_state("disconnected")
        status, body = gw.health()
        assert (status, body["status"], body["telegram"]) == (503, "unhealthy", "disconnected")
        assert "disconnected" in body["error"]
        wait_until(lambda: gw.metric("telegram_connection_status") == 0)

        user.set_state("login_required")
        status, body = gw.health()
        assert (status, body["telegram"]) == (503, "login_required")
        assert "tradingsystem gateway login" in body["error"]

        bot.set_state("connected")
        status, body = gw.health()
        assert (status, body["telegram"]) == (200, "connected")


def test_replay_source_counts_as_working(tmp_path: Path, api: IngestStandIn) -> None:
    replay = ScriptedSource("replay", "replay")
    with Gateway(settings_for(api, tmp_path / "data"), [replay]) as gw:
        status, body = gw.health()
        assert (status, body["status"], body["telegram"]) == (200, "healthy", "replay")
        assert body["sources"] == {"user": "not_configured", "bot": "not_configured", "replay": "replay"}


def test_received_messages_are_delivered_and_counted(tmp_path: Path, api: IngestStandIn) -> None:
    bot = ScriptedSource("bot")
    with Gateway(settings_for(api, tmp_path / "data"), [bot]) as gw:
        for i in range(1, 21):
            bot.receive(payload("-1001649127710", i))
        wait_until(lambda: api.stored_ids("-1001649127710") == list(range(1, 21)), message="20 delivered in order")
        assert gw.metric("telegram_messages_received_total", {"channel_id": "-1001649127710"}) == 20
        wait_until(lambda: gw.metric("telegram_messages_published_total") == 20)
        wait_until(lambda: gw.health()[1]["journalPending"] == 0)
        assert gw.service.cursors.last_acknowledged("-1001649127710") == 20


def test_api_outage_degrades_health_then_recovers_by_itself(tmp_path: Path, api: IngestStandIn) -> None:
    bot = ScriptedSource("bot")
    settings = settings_for(api, tmp_path / "data", failure_queue_warn_bytes=300)
    with Gateway(settings, [bot]) as gw:
        api.stop()
        bot.receive(payload("-1001", 1))
        bot.receive(payload("-1001", 2))
        wait_until(lambda: gw.health()[1]["failureQueue"]["lines"] == 2, message="both queued")
        status, body = gw.health()
        assert (status, body["status"]) == (200, "degraded")
        assert body["failureQueue"]["bytes"] == settings.queue_path.stat().st_size
        assert gw.metric("telegram_publish_failures_total", {"reason": "max_retries"}) == 2
        assert gw.metric("telegram_failure_queue_bytes") > 300
        api.start()
        # the re-drive probes at the end of each retry window; a fresh message also shows the API is back
        bot.receive(payload("-1001", 3))
        wait_until(lambda: api.distinct() == 3, message="queue re-driven")
        wait_until(lambda: gw.health()[1]["status"] == "healthy", message="healthy again")
        assert gw.health()[1]["failureQueue"] == {"lines": 0, "bytes": 0}


def test_health_recovers_from_an_outage_even_with_nothing_left_to_send(tmp_path: Path,
                                                                       api: IngestStandIn) -> None:
    bot = ScriptedSource("bot")
    with Gateway(settings_for(api, tmp_path / "data"), [bot]) as gw:
        api.reject = {1}
        api.stop()
        bot.receive(payload("-1001", 1))
        wait_until(lambda: gw.health()[1]["failureQueue"]["lines"] == 1, message="queued")
        assert gw.health()[1]["status"] == "degraded"
        api.start()
        # the only queued line is refused on re-drive and stays; the probe still sees the API answer
        wait_until(lambda: gw.health()[1]["status"] == "healthy", message="healthy again")
        assert gw.health()[1]["failureQueue"]["lines"] == 1


def test_full_disk_refuses_the_message_clearly_and_recovers(tmp_path: Path, api: IngestStandIn) -> None:
    bot = ScriptedSource("bot")
    with TinyFilesystem(tmp_path / "small", size_kib=2048) as fs:
        with Gateway(settings_for(api, fs.path / "data"), [bot]) as gw:
            bot.receive(payload("-1001", 1))
            wait_until(lambda: api.distinct() == 1)
            assert gw.metric("telegram_journal_disk_full") == 0
            assert gw.metric("telegram_journal_write_errors_total", {"reason": "disk_full"}) == 0
            filler = fill(fs.path)
            big = {**payload("-1001", 2), "text": "x" * 200_000}
            with pytest.raises(JournalFullError):
                bot.receive(big)  # the source is not acknowledged: Telegram will hand it over again
            status, body = gw.health()
            assert (status, body["status"]) == (503, "unhealthy")
            assert "disk full" in body["error"]
            assert gw.metric("telegram_journal_disk_full") == 1
            # the refused append, and any state change that found the disk full too
            failed_writes = gw.metric("telegram_journal_write_errors_total", {"reason": "disk_full"})
            assert failed_writes >= 1
            metrics = httpx.get(gw.server.url + "/metrics", timeout=5).text
            assert f'telegram_journal_write_errors_total{{reason="disk_full"}} {failed_writes}' in metrics
            assert "telegram_journal_disk_full 1.0" in metrics
            filler.unlink()
            bot.receive(big)
            wait_until(lambda: api.distinct() == 2, message="delivered once space returned")
            wait_until(lambda: gw.health()[0] == 200, message="healthy again")
            assert gw.metric("telegram_journal_disk_full") == 0
            assert gw.metric("telegram_journal_write_errors_total", {"reason": "disk_full"}) >= failed_writes


def test_health_is_degraded_while_too_much_or_too_old_is_pending(tmp_path: Path, api: IngestStandIn) -> None:
    bot = ScriptedSource("bot")
    # a long retry window, so that the outage is seen while the messages are still pending in the journal
    settings = settings_for(api, tmp_path / "data", base_retry_delay_ms=2000, max_retries=3,
                            gateway_health_max_pending=5, gateway_health_max_pending_age_s=1)
    with Gateway(settings, [bot]) as gw:
        bot.receive(payload("-1001", 1))
        wait_until(lambda: api.distinct() == 1)
        assert gw.health()[1]["status"] == "healthy"
        api.stop()
        for i in range(2, 5):
            bot.receive(payload(f"-100{i}", i))
        # below the count threshold, but the oldest pending message gets older than a second
        wait_until(lambda: any("oldest pending" in w for w in gw.health()[1].get("warnings", [])),
                   message="the age warning")
        status, body = gw.health()
        assert (status, body["status"], body["journalPending"]) == (200, "degraded", 3)
        assert not any("entries pending" in w for w in body["warnings"])
        assert body["journalOldestPendingAgeS"] > 1
        assert gw.metric("telegram_journal_oldest_pending_age_seconds") > 1
        for i in range(5, 10):
            bot.receive(payload(f"-100{i}", i))
        status, body = gw.health()
        assert (status, body["status"], body["journalPending"]) == (200, "degraded", 8)
        assert any("8 journal entries pending (threshold 5)" in w for w in body["warnings"])
        api.start()
        wait_until(lambda: api.distinct() == 9, timeout=60, message="delivered after the outage")
        wait_until(lambda: gw.health()[1]["status"] == "healthy", message="healthy again")
        assert gw.health()[1]["journalOldestPendingAgeS"] == 0
        assert gw.metric("telegram_journal_oldest_pending_age_seconds") == 0


async def test_monitored_channels_are_configured_plus_registry_and_survive_an_api_outage(
    api: IngestStandIn,
) -> None:
    api.channels = [
        {"channel_id": "-1002222222222", "channel_type": "source", "status": "active"},
        {"channel_id": "3333333333", "channel_type": "source", "status": "active"},
        {"channel_id": "-1004444444444", "channel_type": "source", "status": "inactive"},
        {"channel_id": "-1005555555555", "channel_type": "destination", "status": "active"},
    ]
    client = IngestClient(api.ingest_url, api.token, 2000)
    try:
        registry = ChannelRegistry(frozenset({"-1001111111111"}), client)
        monitored: Monitored = registry
        assert await registry.refresh()
        assert monitored.channel_ids() == {"-1001111111111", "-1002222222222", "-1003333333333"}
        assert monitored.is_monitored("3333333333") and not monitored.is_monitored("-1004444444444")
        api.mode = "unavailable"
        assert not await registry.refresh()
        assert "-1002222222222" in monitored.channel_ids()  # last good list kept
    finally:
        await client.aclose()
    empty = ChannelRegistry(frozenset(), IngestClient("http://127.0.0.1:9/ingest", "t", 500))
    assert empty.is_monitored("-1009999")  # nothing configured: every channel


# -- queue commands --------------------------------------------------------------------------------------


@pytest.fixture
def queue_env(tmp_path: Path, api: IngestStandIn, monkeypatch: pytest.MonkeyPatch) -> FailureQueue:
    for key in list(os.environ):
        if key.startswith(("TELEGRAM_", "GATEWAY_", "API_", "FAILURE_QUEUE_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("API_ENDPOINT", api.ingest_url)
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", api.token)
    settings = GatewaySettings()
    queue = FailureQueue(settings.queue_path, settings.failure_queue_max_bytes, settings.failure_queue_warn_bytes)
    for i in range(1, 6):
        queue.append(payload("-1001", i), 4, "HTTP 503: Database unavailable")
    return queue


def test_queue_status_reports_lines_bytes_and_oldest(queue_env: FailureQueue) -> None:
    result = CliRunner().invoke(gateway_app, ["queue", "status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    first = json.loads(queue_env.path.read_bytes().splitlines()[0])
    assert status["lines"] == 5 and status["bytes"] == queue_env.path.stat().st_size
    assert status["oldestFailedAt"] == first["failedAt"]
    table = CliRunner().invoke(gateway_app, ["queue", "status"])
    assert table.exit_code == 0 and "oldest failedAt" in table.stdout


def test_queue_replay_removes_only_delivered_lines(queue_env: FailureQueue, api: IngestStandIn) -> None:
    api.reject = {3}
    result = CliRunner().invoke(gateway_app, ["queue", "replay"])
    assert result.exit_code == 0, result.output
    assert "delivered: 4" in result.stdout and "remaining: 1" in result.stdout
    assert sorted(api.stored_ids()) == [1, 2, 4, 5]
    [line] = [json.loads(raw) for raw in queue_env.path.read_bytes().splitlines()]
    assert line["messageId"] == 3 and line["attempts"] == 5
    assert line["lastError"] == "rejected by API: Validation failed: text is not acceptable"


def test_queue_replay_with_the_api_down_exits_1_and_keeps_everything(queue_env: FailureQueue,
                                                                    api: IngestStandIn) -> None:
    before = [json.loads(raw)["messageId"] for raw in queue_env.path.read_bytes().splitlines()]
    api.stop()
    result = CliRunner().invoke(gateway_app, ["queue", "replay"])
    assert result.exit_code == 1
    assert "not taking messages" in result.output and "tradingsystem gateway queue replay" in result.output
    assert [json.loads(raw)["messageId"] for raw in queue_env.path.read_bytes().splitlines()] == before


class FloodAwareSource(ScriptedSource):
    """Like the user-account source: exposes a hook the service wires to the flood-wait metric."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.on_flood_wait: Any = None


def test_flood_wait_seconds_are_counted(api: IngestStandIn, tmp_path: Path) -> None:
    source = FloodAwareSource("user")
    with Gateway(settings_for(api, tmp_path / "data"), [source]) as gateway:
        wait_until(lambda: source.on_flood_wait is not None, message="the hook to be wired")
        source.on_flood_wait(17)
        assert gateway.metric("telegram_flood_wait_seconds_total") == 17
        assert "telegram_flood_wait_seconds_total 17.0" in httpx.get(gateway.server.url + "/metrics").text


def test_torn_queue_tail_never_swallows_the_next_line(tmp_path: Path, api: IngestStandIn,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bot = ScriptedSource("bot")
    settings = settings_for(api, tmp_path / "data", max_retries=0)
    queue = FailureQueue(settings.queue_path, settings.failure_queue_max_bytes, settings.failure_queue_warn_bytes)
    queue.append(payload("-1001", 1), 4, "HTTP 503: Database unavailable")
    torn = json.dumps(payload("-1001", 2)).encode()[:57]  # a writer died in the middle of its line
    with settings.queue_path.open("ab") as fh:
        fh.write(torn)
    api.stop()
    with Gateway(settings, [bot]) as gw:
        bot.receive(payload("-1001", 3))
        bot.receive(payload("-1001", 4))
        wait_until(lambda: gw.health()[1]["failureQueue"]["lines"] == 3, message="queued after the torn tail")
        status, body = gw.health()
        assert (status, body["status"]) == (200, "degraded")
        assert body["failureQueue"]["corruptLines"] == 1
        assert any("set aside" in w for w in body["warnings"])
        assert gw.metric("telegram_failure_queue_corrupt_lines_total") == 1
        assert "telegram_failure_queue_corrupt_lines_total 1.0" in httpx.get(gw.server.url + "/metrics").text
    [sidecar] = list(settings.queue_path.parent.glob("failure-queue.jsonl.corrupt-*"))
    assert sidecar.read_bytes() == torn + b"\n"
    assert sidecar.stat().st_mode & 0o777 == 0o600
    assert [json.loads(raw)["messageId"] for raw in settings.queue_path.read_bytes().splitlines()] == [1, 3, 4]
    # every whole line comes back with `queue replay` (the torn one was never acknowledged: the journal
    # still had it when its writer died)
    api.start()
    for key in list(os.environ):
        if key.startswith(("TELEGRAM_", "GATEWAY_", "API_", "FAILURE_QUEUE_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(settings.gateway_data_dir))
    monkeypatch.setenv("API_ENDPOINT", api.ingest_url)
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", api.token)
    result = CliRunner().invoke(gateway_app, ["queue", "replay"])
    assert result.exit_code == 0, result.output
    assert sorted(api.stored_ids()) == [1, 3, 4]
    assert settings.queue_path.read_bytes() == b""


def test_garbage_appended_to_the_queue_is_set_aside_and_the_lines_around_it_delivered(
    queue_env: FailureQueue, api: IngestStandIn
) -> None:
    with queue_env.path.open("ab") as fh:
        fh.write(b"\x00\x00garbage from a bad disk block")
    queue_env.append(payload("-1001", 6), 4, "HTTP 503: Database unavailable")
    with queue_env.path.open("ab") as fh:
        fh.write(b"not json either\n")
    queue_env.append(payload("-1001", 7), 4, "HTTP 503: Database unavailable")
    result = CliRunner().invoke(gateway_app, ["queue", "replay"])
    assert result.exit_code == 0, result.output
    assert sorted(api.stored_ids()) == [1, 2, 3, 4, 5, 6, 7]
    assert queue_env.path.read_bytes() == b""
    [sidecar] = list(queue_env.path.parent.glob("failure-queue.jsonl.corrupt-*"))
    assert sidecar.read_bytes().splitlines() == [b"\x00\x00garbage from a bad disk block", b"not json either"]
    assert "2 unreadable lines" in result.output


def test_queue_replay_goes_in_batches_and_keeps_per_message_errors(queue_env: FailureQueue,
                                                                   api: IngestStandIn) -> None:
    for i in range(6, 2501):
        queue_env.append(payload("-1001", i), 4, "HTTP 503: Database unavailable")
    api.reject = {7, 1500}
    result = CliRunner().invoke(gateway_app, ["queue", "replay"])
    assert result.exit_code == 0, result.output
    assert "delivered: 2498" in result.stdout and "remaining: 2" in result.stdout
    assert api.batch_requests == 3  # at most 1000 messages per POST
    assert sum(api.requests.values()) == 2500  # each message sent once, none of them alone
    kept = [json.loads(raw) for raw in queue_env.path.read_bytes().splitlines()]
    assert [line["messageId"] for line in kept] == [7, 1500]
    assert all(line["attempts"] == 5 and "Validation failed" in line["lastError"] for line in kept)


def test_the_automatic_redrive_goes_in_batches(tmp_path: Path, api: IngestStandIn) -> None:
    settings = settings_for(api, tmp_path / "data")
    queue = FailureQueue(settings.queue_path, settings.failure_queue_max_bytes, settings.failure_queue_warn_bytes)
    for i in range(1, 1201):
        queue.append(payload("-1001", i), 4, "HTTP 503: Database unavailable")
    with Gateway(settings, [ScriptedSource("bot")]) as gw:
        wait_until(lambda: api.distinct() == 1200, message="the queue re-driven")
        wait_until(lambda: gw.health()[1]["failureQueue"]["lines"] == 0, message="queue emptied")
    assert api.batch_requests == 2 and sum(api.requests.values()) == 1200


# -- file modes ------------------------------------------------------------------------------------------

SAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "src/tradingsystem/gateway/data/sample_export.json"


def modes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022): without explicit modes, new files would be readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_import_into_a_new_data_directory_creates_it_private(tmp_path: Path, api: IngestStandIn,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             open_umask: None) -> None:
    for key in list(os.environ):
        if key.startswith(("TELEGRAM_", "GATEWAY_", "API_", "FAILURE_QUEUE_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "new" / "data"
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(data))
    monkeypatch.setenv("API_ENDPOINT", api.ingest_url)
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", api.token)
    monkeypatch.setenv("MAX_RETRIES", "0")
    from tradingsystem.gateway.export import TelegramExport

    first_id = next(iter(TelegramExport(SAMPLE_EXPORT, source="import").payloads()))["messageId"]
    api.reject = {first_id}  # one message refused, so that the import writes the failure queue too
    result = CliRunner().invoke(gateway_app, ["import", str(SAMPLE_EXPORT)])
    assert result.exit_code == 1, result.output  # one message failed and waits in the queue
    assert data.stat().st_mode & 0o777 == 0o700
    found = modes(data)
    assert {"journal.db", "failure-queue.jsonl", "failure-queue.jsonl.lock"} <= set(found)
    assert found == {name: 0o600 for name in found}, found


def test_every_file_the_service_writes_is_private_and_loose_ones_are_tightened(
    tmp_path: Path, api: IngestStandIn, open_umask: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    with Journal(data / "journal.db").open() as journal:  # as an older version left it: 0644 in 0755
        journal.append_sync(payload("-1001", 1))
    os.chmod(data / "journal.db", 0o644)
    os.chmod(data, 0o755)
    (data / "cursors.json").write_text('{"-1001": 0}')
    os.chmod(data / "cursors.json", 0o644)
    bot = ScriptedSource("bot")
    settings = settings_for(api, data, max_retries=0)
    with Gateway(settings, [bot]) as gw:
        wait_until(lambda: api.distinct() == 1, message="the journaled message delivered")
        api.reject = {2}
        bot.receive(payload("-1001", 2))  # refused: the failure queue and its lock are written
        wait_until(lambda: gw.health()[1]["failureQueue"]["lines"] == 1)
        with settings.queue_path.open("ab") as fh:
            fh.write(b"torn")
        api.stop()
        bot.receive(payload("-1001", 3))  # queued after the torn tail: the sidecar is written
        wait_until(lambda: gw.health()[1]["failureQueue"]["lines"] == 2)
        api.start()
        wait_until(lambda: (data / "cursors.json").exists() and '"-1001": 3' in (data / "cursors.json").read_text(),
                   timeout=60, message="cursor written")
        assert data.stat().st_mode & 0o777 == 0o700
        found = modes(data)  # while running: journal.db-wal and -shm exist too
        assert {"journal.db", "journal.db-wal", "journal.db-shm", "cursors.json", "failure-queue.jsonl",
                "failure-queue.jsonl.lock"} <= set(found)
        assert any(name.startswith("failure-queue.jsonl.corrupt-") for name in found)
        assert {n: m for n, m in found.items() if not n.startswith(".session")} == {
            n: 0o600 for n in found if not n.startswith(".session")}, found


def test_import_into_a_read_only_data_directory_is_one_clear_error(tmp_path: Path, api: IngestStandIn,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("TELEGRAM_", "GATEWAY_", "API_", "FAILURE_QUEUE_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_ENDPOINT", api.ingest_url)
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", api.token)
    with TinyFilesystem(tmp_path / "ro", size_kib=1024) as fs:
        monkeypatch.setenv("GATEWAY_DATA_DIR", str(fs.path / "data"))
        fs.remount(read_only=True)
        try:
            result = CliRunner().invoke(gateway_app, ["import", str(SAMPLE_EXPORT)])
        finally:
            fs.remount(read_only=False)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"FATAL: GATEWAY_DATA_DIR {fs.path / 'data'} is not usable" in result.output
    assert "Read-only file system" in result.output
    assert api.distinct() == 0
