"""`replyToMessageId` from every source: Telethon messages, Bot API updates, Telegram Desktop exports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from aiogram.types import Update
from telethon.tl import types

from tradingsystem.gateway.export import TelegramExport
from tradingsystem.gateway.sources.bot import update_to_payload
from tradingsystem.gateway.sources.telethon_adapter import message_to_payload

WHEN = datetime(2025, 10, 24, 19, 30, 39, tzinfo=UTC)


def test_telethon_reply_header() -> None:
    reply = types.Message(id=444262, peer_id=types.PeerChannel(1649127710), date=WHEN, message="PETR4 STOPADO",
                          post=True, reply_to=types.MessageReplyHeader(reply_to_msg_id=444261))
    payload = message_to_payload(reply, "new", "user")
    assert payload is not None and payload["replyToMessageId"] == 444261
    plain = types.Message(id=444263, peer_id=types.PeerChannel(1649127710), date=WHEN, message="Bom dia", post=True)
    payload = message_to_payload(plain, "new", "user")
    assert payload is not None and "replyToMessageId" not in payload  # the contract's shape when there is none


def test_bot_api_reply_to_message() -> None:
    chat = {"id": -1001649127710, "title": "Operações | TP Capital", "type": "channel"}
    original = {"message_id": 444261, "chat": chat, "date": 1761334239, "text": "Ativo: PETR4"}
    update = Update.model_validate({"update_id": 1, "channel_post": {
        "message_id": 444262, "chat": chat, "date": 1761334300, "text": "PETR4 STOPADO", "reply_to_message": original,
    }})
    payload = update_to_payload(update)
    assert payload is not None and payload["replyToMessageId"] == 444261
    edited = Update.model_validate({"update_id": 2, "edited_channel_post": {
        "message_id": 444262, "chat": chat, "date": 1761334300, "edit_date": 1761334400, "text": "PETR4 STOPADO ❌",
        "reply_to_message": original,
    }})
    payload = update_to_payload(edited)
    assert payload is not None and payload["kind"] == "edit" and payload["replyToMessageId"] == 444261


def test_export_reply_to_message_id(tmp_path: Path) -> None:
    export = {"name": "TP", "type": "public_channel", "id": 1649127710, "messages": [
        {"id": 1, "type": "message", "date": "2025-10-24T16:30:39", "date_unixtime": "1761334239",
         "text": "Ativo: PETR4"},
        {"id": 2, "type": "message", "date": "2025-10-24T16:31:39", "date_unixtime": "1761334299",
         "text": "PETR4 STOPADO", "reply_to_message_id": 1, "edited": "2025-10-24T16:32:39",
         "edited_unixtime": "1761334359"},
    ]}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    payloads = list(TelegramExport(path).payloads())
    assert [(p["messageId"], p["kind"], p.get("replyToMessageId")) for p in payloads] == [
        (1, "new", None), (2, "new", 1), (2, "edit", 1)]
