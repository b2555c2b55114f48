"""Types shared by the gateway's Telegram sources, its journal and its publisher."""

from __future__ import annotations

from typing import Any, Literal, Protocol

# The contract's ingest payload (see docs/architecture.md): channelId, messageId, timestamp, text,
# kind, editDate, photos, source, chatTitle, forwardedFrom.
IngestPayload = dict[str, Any]

SourceName = Literal["user", "bot", "backfill", "import", "replay"]
SourceState = Literal["connected", "disconnected", "login_required", "not_configured", "replay"]


class MessageSink(Protocol):
    """Where a source hands a received message; returns only once the message is durably journaled."""

    async def __call__(self, payload: IngestPayload) -> None: ...


class Monitored(Protocol):
    """The set of monitored channels: `TELEGRAM_SOURCE_CHANNEL_IDS` united with the API's registry."""

    def is_monitored(self, channel_id: str) -> bool:
        """True when the channel is monitored; an empty configuration monitors every channel."""
        ...

    def channel_ids(self) -> frozenset[str]:
        """The explicitly monitored channel ids ("-100…" form); empty means every channel."""
        ...


class CursorReader(Protocol):
    """Per-channel position of the last message the API acknowledged."""

    def last_acknowledged(self, channel_id: str) -> int | None: ...


class Source(Protocol):
    """A Telegram source (user account, bot or replay) that feeds messages into the journal."""

    name: str

    @property
    def state(self) -> SourceState: ...

    async def run(self, sink: MessageSink) -> None:
        """Receive messages until cancelled; never raises for Telegram-side trouble, reports it in `state`."""
        ...


def normalize_channel_id(raw: int | str) -> str:
    """Return a channel id in the Bot API's "-100<id>" form, whatever form Telegram or an export used."""
    text = str(raw).strip()
    if text.startswith("-100"):
        return text
    if text.startswith("-"):
        return text
    return f"-100{text}"
