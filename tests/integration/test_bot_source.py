"""The bot source with the real aiogram client against the stand-in Bot API server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from tests.support.fake_bot_api import FakeBotApi
from tests.support.gateway_sources import RecordingSink, StaticMonitored, running, wait_until
from tradingsystem.gateway.sources.bot import BotSource, token_fingerprint
from tradingsystem.gateway.types import IngestPayload

CHANNEL = -1001649127710
OTHER = -1009999999999
DESTINATION = "-1002000000001"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    server = await FakeBotApi().start()
    yield server
    await server.stop()


def make_source(api: FakeBotApi, *, monitored: tuple[str, ...] = (str(CHANNEL),), **kwargs: object) -> BotSource:
    options: dict[str, object] = {"poll_timeout": 1, "backoff_initial": 0.05, "backoff_max": 0.3}
    options.update(kwargs)
    return BotSource(api.token, StaticMonitored(monitored), api_url=api.base_url, **options)  # type: ignore[arg-type]


async def test_posts_edits_photos_and_filters(api: FakeBotApi) -> None:
    sink = RecordingSink()
    source = make_source(api)
    assert source.state == "disconnected"
    signal = "🟢Swing Trade\n\nAtivo: BOVAW32\nCompra: 1,04 a 1,06\nAlvo 1: 1,15\nStop: 0,70"
    api.channel_post(CHANNEL, signal, message_id=444261, date=1761334239)
    api.channel_post(CHANNEL, caption="Gráfico do BOVA11 📈", photo=True, message_id=444262, date=1761334300)
    api.channel_post(CHANNEL, photo=True, message_id=444263, date=1761334301)
    api.channel_post(CHANNEL, signal.replace("0,70", "0,75"), message_id=444261, date=1761334239,
                     edit_date=1761334500)
    api.channel_post(CHANNEL, "Comunicado da B3", message_id=444264, date=1761334600,
                     forward_from=(-1001111111111, 555, 1761330000))
    api.channel_post(CHANNEL, sticker=True, message_id=444265)  # nothing to ingest
    api.channel_post(OTHER, "canal não monitorado", message_id=1)
    api.group_message(CHANNEL, "BOVAW22 ALVO 1 ATINGIDO ✅ +17,02%", message_id=444266)
    last = api.group_message(777, "mensagem privada", message_id=5, kind="private")

    async with running(source, sink):
        await wait_until(lambda: api.confirmed_offset > last, what="every update confirmed")
        assert source.state == "connected"

    assert sink.keys() == [
        (str(CHANNEL), 444261, "new"),
        (str(CHANNEL), 444262, "new"),
        (str(CHANNEL), 444263, "new"),
        (str(CHANNEL), 444261, "edit"),
        (str(CHANNEL), 444264, "new"),
        (str(CHANNEL), 444266, "new"),
    ]
    first, photo, bare_photo, edit, forwarded, group = sink.payloads
    assert first == {
        "channelId": "-1001649127710",
        "messageId": 444261,
        "timestamp": "2025-10-24T19:30:39Z",
        "text": signal,
        "kind": "new",
        "editDate": None,
        "photos": [],
        "source": "bot",
        "chatTitle": "Operações | TP Capital",
        "forwardedFrom": None,
    }
    assert photo["text"] == "Gráfico do BOVA11 📈"
    assert photo["photos"] == ["tg-bot:AgACAgQAAx0large444262"]
    assert bare_photo["text"] == "" and bare_photo["photos"] == ["tg-bot:AgACAgQAAx0large444263"]
    assert edit["kind"] == "edit"
    assert edit["editDate"] == "2025-10-24T19:35:00Z"
    assert edit["timestamp"] == "2025-10-24T19:30:39Z"
    assert edit["text"].endswith("Stop: 0,75")
    assert forwarded["forwardedFrom"] == {
        "channelId": "-1001111111111", "messageId": 555, "date": "2025-10-24T18:20:00Z",
    }
    assert group["chatTitle"] == "Sala de Operações"
    assert api.calls["deletewebhook"] >= 1 and api.calls["getme"] >= 1


async def test_every_channel_when_none_configured(api: FakeBotApi) -> None:
    sink = RecordingSink()
    api.channel_post(CHANNEL, "a", message_id=1)
    last = api.channel_post(OTHER, "b", message_id=1)
    async with running(make_source(api, monitored=()), sink):
        await wait_until(lambda: api.confirmed_offset > last)
    assert [p["channelId"] for p in sink.payloads] == [str(CHANNEL), str(OTHER)]


async def test_burst_of_500_in_order_without_loss(api: FakeBotApi) -> None:
    sink = RecordingSink()
    ids = [api.channel_post(CHANNEL, f"ATIVO: PETR4\nCOMPRA: {n},00\nSTOP: 1,00", message_id=n)
           for n in range(1, 501)]
    async with running(make_source(api), sink):
        await wait_until(lambda: len(sink.payloads) >= 500, what="500 messages")
        await wait_until(lambda: api.confirmed_offset == ids[-1] + 1, what="last offset confirmed")
    assert [p["messageId"] for p in sink.payloads] == list(range(1, 501))
    assert api.pending_ids == []


async def test_malformed_updates_are_ignored_with_a_log_line(api: FakeBotApi) -> None:
    sink = RecordingSink()
    source = make_source(api)
    api.channel_post(CHANNEL, "antes", message_id=1)
    api.enqueue_malformed({"channel_post": {"message_id": "not-a-number", "date": "yesterday"}})
    api.enqueue_malformed({"channel_post": {"message_id": 3, "date": 1761334239}})  # no chat
    api.enqueue_malformed({"edited_channel_post": ["wrong", "shape"]})
    api.enqueue_garbage("just a string")
    api.enqueue_garbage({"no_update_id": True})
    last = api.channel_post(CHANNEL, "depois", message_id=2)

    with capture_logs() as logs:
        async with running(source, sink) as task:
            await wait_until(lambda: api.confirmed_offset > last, what="updates after the malformed ones")
            assert not task.done()
            assert source.state == "connected"

    assert [p["text"] for p in sink.payloads] == ["antes", "depois"]
    assert source.malformed == 5
    ignored = [entry for entry in logs if entry["event"] == "Malformed update ignored"]
    assert len(ignored) == 5
    assert all(entry["log_level"] == "warning" for entry in ignored)


async def test_offset_confirmed_only_after_the_sink_returns(api: FakeBotApi) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_journal(payload: IngestPayload) -> None:
        if payload["messageId"] == 2:
            entered.set()
            await release.wait()

    sink = RecordingSink(slow_journal)
    api.channel_post(CHANNEL, "um", message_id=1)
    second = api.channel_post(CHANNEL, "dois", message_id=2)
    third = api.channel_post(CHANNEL, "três", message_id=3)
    async with running(make_source(api), sink):
        await asyncio.wait_for(entered.wait(), 15)
        # While the journal has not returned, Telegram must still hold the update.
        assert api.confirmed_offset <= second
        assert second in api.pending_ids
        assert all(offset is None or offset <= second for offset in api.offsets_seen)
        release.set()
        await wait_until(lambda: api.confirmed_offset == third + 1, what="offsets confirmed after journaling")
    assert [p["messageId"] for p in sink.payloads] == [1, 2, 3]


async def test_failing_sink_causes_redelivery(api: FakeBotApi) -> None:
    failures = {"left": 2}

    async def flaky_journal(payload: IngestPayload) -> None:
        if payload["messageId"] == 2 and failures["left"]:
            failures["left"] -= 1
            raise OSError(28, "No space left on device")

    sink = RecordingSink(flaky_journal)
    api.channel_post(CHANNEL, "um", message_id=1)
    second = api.channel_post(CHANNEL, "dois", message_id=2)
    third = api.channel_post(CHANNEL, "três", message_id=3)
    with capture_logs() as logs:
        async with running(make_source(api), sink):
            await wait_until(lambda: api.confirmed_offset == third + 1, what="everything journaled")
    assert [p["messageId"] for p in sink.payloads] == [1, 2, 3]
    assert [p["messageId"] for p in sink.attempts] == [1, 2, 2, 2, 3]
    # Telegram sent update 2 again each time, because its offset was never confirmed.
    assert api.deliveries[second] >= 3
    assert any(entry["event"].startswith("Journal refused an update") for entry in logs)


async def test_restart_receives_what_was_not_confirmed(api: FakeBotApi) -> None:
    entered = asyncio.Event()

    async def never_returns(payload: IngestPayload) -> None:
        if payload["messageId"] == 2:
            entered.set()
            await asyncio.Event().wait()

    api.channel_post(CHANNEL, "um", message_id=1)
    api.channel_post(CHANNEL, "dois", message_id=2)
    last = api.channel_post(CHANNEL, "três", message_id=3)
    first_sink = RecordingSink(never_returns)
    async with running(make_source(api), first_sink):
        await asyncio.wait_for(entered.wait(), 15)
    # The process "died" while journaling message 2; a new one starts without any offset.
    second_sink = RecordingSink()
    async with running(make_source(api), second_sink):
        await wait_until(lambda: api.confirmed_offset > last)
    assert [p["messageId"] for p in first_sink.payloads] == [1]
    # Update 1 was journaled but its offset not yet confirmed, so it may come again (the journal and the
    # API drop duplicates); what was never journaled always comes again.
    received = [p["messageId"] for p in second_sink.payloads]
    assert received[-2:] == [2, 3]
    assert set(received) <= {1, 2, 3}


async def test_server_going_away_and_coming_back(api: FakeBotApi) -> None:
    sink = RecordingSink()
    source = make_source(api)
    api.channel_post(CHANNEL, "antes da queda", message_id=1)
    async with running(source, sink) as task:
        await wait_until(lambda: len(sink.payloads) == 1)
        assert source.state == "connected"

        await api.go_away()
        await wait_until(lambda: source.state == "disconnected", what="disconnected state")
        api.channel_post(CHANNEL, "durante a queda", message_id=2)
        await api.come_back()
        await wait_until(lambda: len(sink.payloads) == 2, what="message posted while down")
        assert source.state == "connected"

        # A proxy answering 502 with an HTML page is trouble too, not a crash.
        api.error_status = 502
        await wait_until(lambda: source.state == "disconnected", what="disconnected on 502")
        api.error_status = None
        last = api.channel_post(CHANNEL, "depois", message_id=3)
        await wait_until(lambda: api.confirmed_offset > last)
        assert source.state == "connected"
        assert not task.done()
    assert [p["text"] for p in sink.payloads] == ["antes da queda", "durante a queda", "depois"]


async def test_server_down_at_start(api: FakeBotApi) -> None:
    await api.go_away()
    sink = RecordingSink()
    source = make_source(api)
    async with running(source, sink):
        await wait_until(lambda: source.state == "disconnected")
        api.channel_post(CHANNEL, "oi", message_id=1)
        await api.come_back()
        await wait_until(lambda: len(sink.payloads) == 1)
        assert source.state == "connected"


async def test_wrong_token_keeps_running_disconnected_and_never_logs_the_token(api: FakeBotApi) -> None:
    wrong = "987654321:AAWrongTokenThatTheServerRejects"
    source = BotSource(wrong, StaticMonitored(), api_url=api.base_url, poll_timeout=1,
                       backoff_initial=0.05, backoff_max=0.2)
    with capture_logs() as logs:
        async with running(source, RecordingSink()) as task:
            await wait_until(lambda: api.calls["deletewebhook"] >= 3, what="retries")
            assert source.state == "disconnected"
            assert not task.done()
    rendered = repr(logs)
    assert wrong not in rendered
    assert token_fingerprint(wrong) in rendered


async def test_forwarding_is_paced_and_never_blocks_reception(api: FakeBotApi) -> None:
    sink = RecordingSink()
    source = make_source(api, destination_channel_id=DESTINATION, forward_rate="3/minute")
    assert source.forwarder is not None
    api.hold_copies()
    for n in range(1, 6):
        api.channel_post(CHANNEL, f"sinal {n}", message_id=n)
    last = api.channel_post(CHANNEL, "sinal 1 corrigido", message_id=1, edit_date=1761334999)
    async with running(source, sink):
        # copyMessage hangs, yet every message is received and confirmed.
        await wait_until(lambda: api.confirmed_offset > last, what="reception while forwarding hangs")
        assert len(sink.payloads) == 6
        assert api.copies == []
        api.release_copies()
        await wait_until(lambda: len(api.copies) == 3, what="three copies")
        await wait_until(lambda: source.forwarder is not None and source.forwarder.backlog == 2)
        # Three a minute: the other two wait for the window instead of hitting Telegram.
        assert len(api.copies) == 3
    assert api.copies == [
        {"chat_id": DESTINATION, "from_chat_id": str(CHANNEL), "message_id": str(n)} for n in (1, 2, 3)
    ]


async def test_forwarding_waits_when_telegram_says_retry_after(api: FakeBotApi) -> None:
    sink = RecordingSink()
    source = make_source(api, destination_channel_id=DESTINATION, forward_rate="30/second")
    api.retry_after_once = 1
    api.channel_post(CHANNEL, "sinal", message_id=7)
    async with running(source, sink):
        await wait_until(lambda: len(api.copies) == 1, what="copy after retry_after")
    assert api.calls["copymessage"] == 2
    assert source.forwarder is not None and source.forwarder.copied == 1
