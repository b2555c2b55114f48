"""Telethon adapter: real Telethon messages, updates and events turned into ingest payloads."""

from __future__ import annotations

from datetime import UTC, datetime

from telethon import events
from telethon.tl import types
from tests.support.fake_telethon import channel_message

from tradingsystem.gateway.sources.telethon_adapter import (
    backfill_payloads,
    deleted_to_payloads,
    message_to_payload,
)

CHANNEL = 1649127710
MARKED = "-1001649127710"


def test_new_text_message() -> None:
    message = channel_message(CHANNEL, 444261, "ATIVO: PETR4\nCOMPRA: 25,50 A 26,00\nSTOP: 24,00")
    assert message_to_payload(message, "new", "user") == {
        "channelId": MARKED,
        "messageId": 444261,
        "timestamp": "2025-10-24T19:30:39Z",
        "text": "ATIVO: PETR4\nCOMPRA: 25,50 A 26,00\nSTOP: 24,00",
        "kind": "new",
        "editDate": None,
        "photos": [],
        "source": "user",
        "chatTitle": None,
        "forwardedFrom": None,
    }


def test_message_from_a_new_message_event() -> None:
    message = channel_message(CHANNEL, 7, "BOVAW22 ALVO 1 ATINGIDO ✅ +17,02%")
    event = events.NewMessage.build(types.UpdateNewChannelMessage(message=message, pts=10, pts_count=1))
    assert event is not None
    payload = message_to_payload(event.message, "new", "user", chat_title="Operações | TP Capital")
    assert payload is not None
    assert payload["text"] == "BOVAW22 ALVO 1 ATINGIDO ✅ +17,02%"
    assert payload["chatTitle"] == "Operações | TP Capital"


def test_edit_from_an_edited_event_carries_edit_date() -> None:
    message = channel_message(CHANNEL, 8, "Alvo corrigido: 1,20", edited_minutes=5)
    event = events.MessageEdited.build(types.UpdateEditChannelMessage(message=message, pts=11, pts_count=1))
    payload = message_to_payload(event.message, "edit", "user")
    assert payload is not None
    assert payload["kind"] == "edit"
    assert payload["editDate"] == "2025-10-24T19:35:39Z"
    assert payload["timestamp"] == "2025-10-24T19:30:39Z"


def test_photo_with_and_without_caption() -> None:
    captioned = message_to_payload(channel_message(CHANNEL, 9, "Gráfico 📈", photo_id=555), "new", "user")
    assert captioned is not None
    assert captioned["photos"] == [f"tg-user:{MARKED}/9/555"]
    assert captioned["text"] == "Gráfico 📈"
    bare = message_to_payload(channel_message(CHANNEL, 10, photo_id=556), "new", "user")
    assert bare is not None and bare["text"] == "" and bare["photos"] == [f"tg-user:{MARKED}/10/556"]


def test_nothing_to_ingest() -> None:
    sticker = types.Message(
        id=11, peer_id=types.PeerChannel(CHANNEL), date=datetime(2025, 10, 24, tzinfo=UTC), message="",
        media=types.MessageMediaDocument(document=types.DocumentEmpty(id=1)),
    )
    assert message_to_payload(sticker, "new", "user") is None
    service = types.MessageService(
        id=12, peer_id=types.PeerChannel(CHANNEL), date=datetime(2025, 10, 24, tzinfo=UTC),
        action=types.MessageActionPinMessage(),
    )
    assert message_to_payload(service, "new", "user") is None
    private = types.Message(id=13, peer_id=types.PeerUser(42), date=datetime(2025, 10, 24, tzinfo=UTC),
                            message="oi")
    assert message_to_payload(private, "new", "user") is None
    basic_group = types.Message(id=14, peer_id=types.PeerChat(42), date=datetime(2025, 10, 24, tzinfo=UTC),
                                message="oi")
    assert message_to_payload(basic_group, "new", "user") is None


def test_forwarded_from_a_channel() -> None:
    payload = message_to_payload(channel_message(CHANNEL, 15, "Comunicado", forwarded_from=(1111111111, 555)),
                                 "new", "user")
    assert payload is not None
    assert payload["forwardedFrom"] == {"channelId": "-1001111111111", "messageId": 555,
                                        "date": "2025-10-24T18:30:39Z"}
    from_user = types.Message(
        id=16, peer_id=types.PeerChannel(CHANNEL), date=datetime(2025, 10, 24, tzinfo=UTC), message="x",
        fwd_from=types.MessageFwdHeader(date=datetime(2025, 10, 23, tzinfo=UTC), from_id=types.PeerUser(5)),
    )
    forwarded = message_to_payload(from_user, "new", "user")
    assert forwarded is not None and forwarded["forwardedFrom"] is None


def test_backfill_payloads() -> None:
    plain = backfill_payloads(channel_message(CHANNEL, 20, "texto"))
    assert [(p["kind"], p["source"]) for p in plain] == [("new", "backfill")]
    edited = backfill_payloads(channel_message(CHANNEL, 21, "texto novo", edited_minutes=3))
    assert [(p["kind"], p["editDate"]) for p in edited] == [("new", None), ("edit", "2025-10-24T19:33:39Z")]
    hidden = channel_message(CHANNEL, 22, "reação", edited_minutes=3)
    hidden.edit_hide = True
    assert [p["kind"] for p in backfill_payloads(hidden)] == ["new"]
    service = types.MessageService(id=23, peer_id=types.PeerChannel(CHANNEL),
                                   date=datetime(2025, 10, 24, tzinfo=UTC), action=types.MessageActionPinMessage())
    assert backfill_payloads(service) == []


def test_deleted_event_in_a_channel() -> None:
    event = events.MessageDeleted.build(
        types.UpdateDeleteChannelMessages(channel_id=CHANNEL, messages=[444261, 444262], pts=12, pts_count=2)
    )
    payloads = deleted_to_payloads(event, now="2025-10-24T20:00:00Z")
    assert payloads == [
        {
            "channelId": MARKED, "messageId": message_id, "timestamp": "2025-10-24T20:00:00Z", "text": "",
            "kind": "delete", "editDate": None, "photos": [], "source": "user", "chatTitle": None,
            "forwardedFrom": None,
        }
        for message_id in (444261, 444262)
    ]


def test_deleted_event_without_a_chat_is_ignored() -> None:
    event = events.MessageDeleted.build(types.UpdateDeleteMessages(messages=[1, 2], pts=3, pts_count=2))
    assert deleted_to_payloads(event) == []


def test_deleted_timestamp_defaults_to_now() -> None:
    event = events.MessageDeleted.build(
        types.UpdateDeleteChannelMessages(channel_id=CHANNEL, messages=[5], pts=12, pts_count=1)
    )
    before = datetime.now(UTC).replace(microsecond=0)
    (payload,) = deleted_to_payloads(event)
    after = datetime.now(UTC)
    seen = datetime.strptime(payload["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= seen <= after
