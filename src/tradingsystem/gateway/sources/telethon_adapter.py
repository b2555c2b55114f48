"""Turns Telethon messages and deletion events into ingest payloads (no network, no client needed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from telethon.tl import types

from tradingsystem.gateway.sources.common import (
    USER_PHOTO_PREFIX,
    Kind,
    iso_utc,
    make_payload,
    utc_now_iso,
)
from tradingsystem.gateway.types import IngestPayload


def channel_id_of(peer: Any) -> str | None:
    """The "-100…" id of a channel or supergroup peer; None for users and basic groups (not monitored)."""
    if isinstance(peer, types.PeerChannel):
        return f"-100{peer.channel_id}"
    return None


def _chat_title(message: Any) -> str | None:
    try:
        chat = message.chat
    except (AttributeError, ValueError):
        return None
    title = getattr(chat, "title", None)
    return title if isinstance(title, str) else None


def _forwarded_from(message: Any) -> dict[str, object] | None:
    header = getattr(message, "fwd_from", None)
    if not isinstance(header, types.MessageFwdHeader):
        return None
    origin = channel_id_of(header.from_id)
    if origin is None or not header.channel_post:
        return None
    date = header.date
    return {
        "channelId": origin,
        "messageId": int(header.channel_post),
        "date": iso_utc(date) if isinstance(date, datetime) else None,
    }


def _reply_to(message: Any) -> int | None:
    header = getattr(message, "reply_to", None)
    reply_id = getattr(header, "reply_to_msg_id", None) if isinstance(header, types.MessageReplyHeader) else None
    return reply_id if isinstance(reply_id, int) and not isinstance(reply_id, bool) else None


def message_to_payload(
    message: Any, kind: Kind, source: str, *, chat_title: str | None = None
) -> IngestPayload | None:
    """The payload for a channel message, or None when there is nothing to ingest.

    None for service messages (joins, pins), messages outside channels, and messages with neither
    text nor a photo (stickers, polls, bare documents). `kind` "edit" takes its `editDate` from the
    message's `edit_date`.
    """
    if not isinstance(message, types.Message):
        return None
    channel_id = channel_id_of(message.peer_id)
    if channel_id is None or not isinstance(message.date, datetime):
        return None
    text = message.message or ""
    photos: list[str] = []
    media = message.media
    if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        photos.append(f"{USER_PHOTO_PREFIX}{channel_id}/{message.id}/{media.photo.id}")
    if not text.strip() and not photos:
        return None
    edit_date: str | None = None
    if kind == "edit":
        edited = message.edit_date
        edit_date = iso_utc(edited) if isinstance(edited, datetime) else utc_now_iso()
    return make_payload(
        channel_id=channel_id,
        message_id=int(message.id),
        timestamp=iso_utc(message.date),
        text=text,
        kind=kind,
        source=source,
        edit_date=edit_date,
        photos=photos,
        chat_title=chat_title or _chat_title(message),
        forwarded_from=_forwarded_from(message),
        reply_to_message_id=_reply_to(message),
    )


def backfill_payloads(message: Any, *, chat_title: str | None = None) -> list[IngestPayload]:
    """Payloads for a message read from history: `new`, plus an `edit` if it was edited meanwhile."""
    new = message_to_payload(message, "new", "backfill", chat_title=chat_title)
    if new is None:
        return []
    result = [new]
    if isinstance(message.edit_date, datetime) and not message.edit_hide:
        edit = message_to_payload(message, "edit", "backfill", chat_title=chat_title)
        if edit is not None:
            result.append(edit)
    return result


def deleted_to_payloads(event: Any, *, now: str | None = None) -> list[IngestPayload]:
    """One `delete` payload per deleted id of a channel; [] when Telegram did not say which chat.

    Telegram does not send a deleted message's date, so `timestamp` is when the deletion was seen.
    """
    marked = getattr(event, "chat_id", None)
    # Only channels and supergroups carry a chat in deletion updates; their marked ids start with -100.
    if not isinstance(marked, int) or not str(marked).startswith("-100"):
        return []
    channel_id = str(marked)
    seen = now or utc_now_iso()
    ids = getattr(event, "deleted_ids", None) or []
    return [
        make_payload(
            channel_id=channel_id,
            message_id=int(message_id),
            timestamp=seen,
            text="",
            kind="delete",
            source="user",
        )
        for message_id in ids
        if isinstance(message_id, int) and message_id > 0
    ]
