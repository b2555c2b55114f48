"""Helpers every source shares to build the contract's ingest payload (times, photo references)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from tradingsystem.gateway.types import IngestPayload

Kind = Literal["new", "edit", "delete"]

# Photo references are opaque strings the gateway can resolve later; the prefix says who can:
#   "tg-bot:<file_id>"                         the Bot API (getFile) with the ingestion bot's token
#   "tg-user:<channelId>/<messageId>/<photoId>" the user account (download_media of that message)
#   "export:<relative path>"                   a file inside the Telegram Desktop export's folder
BOT_PHOTO_PREFIX = "tg-bot:"
USER_PHOTO_PREFIX = "tg-user:"
EXPORT_PHOTO_PREFIX = "export:"


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z` suffix, to the second (Telegram dates have no sub-second part)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_from_unix(seconds: int | float) -> str:
    return iso_utc(datetime.fromtimestamp(float(seconds), tz=UTC))


def utc_now_iso() -> str:
    return iso_utc(datetime.now(UTC))


def make_payload(
    *,
    channel_id: str,
    message_id: int,
    timestamp: str,
    text: str,
    kind: Kind,
    source: str,
    edit_date: str | None = None,
    photos: list[str] | None = None,
    chat_title: str | None = None,
    forwarded_from: dict[str, object] | None = None,
    reply_to_message_id: int | None = None,
) -> IngestPayload:
    """The ingest payload with every contract field present, in the contract's order.

    `replyToMessageId` is added only for a reply: the API links an update to the signal it answers.
    """
    payload: IngestPayload = {
        "channelId": channel_id,
        "messageId": message_id,
        "timestamp": timestamp,
        "text": text,
        "kind": kind,
        "editDate": edit_date,
        "photos": list(photos or []),
        "source": source,
        "chatTitle": chat_title,
        "forwardedFrom": forwarded_from,
    }
    if reply_to_message_id is not None and reply_to_message_id > 0:
        payload["replyToMessageId"] = reply_to_message_id
    return payload
