"""The ingest payload at the edge: its documented schema, and a validator that names every problem."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KINDS = ("new", "edit", "delete")
SOURCES = ("user", "bot", "backfill", "import", "replay")
MAX_TEXT = 65536
_INT_RE = re.compile(r"^-?\d{1,20}$")
_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$")


class ForwardedFrom(BaseModel):
    """Where a forwarded message came from (kept as given)."""

    channelId: str | None = None
    messageId: int | None = None
    date: str | None = None


class IngestPayload(BaseModel):
    """One Telegram message as the gateway delivers it (documentation schema; validation is `validate_ingest`)."""

    channelId: str = Field(pattern=r"^-?\d{1,20}$", description='Channel id, a string of an integer, normally "-100…"')
    messageId: int = Field(gt=0, le=2**63 - 1)
    timestamp: str = Field(json_schema_extra={"format": "date-time"}, description="The Telegram message date, ISO 8601")
    text: str = Field("", description='Text or caption; "" only with photos or for a delete')
    kind: Literal["new", "edit", "delete"] = "new"
    editDate: str | None = Field(None, description="Required for kind edit")
    photos: list[Any] = Field(default_factory=list)
    source: Literal["user", "bot", "backfill", "import", "replay"] = "user"
    chatTitle: str | None = None
    forwardedFrom: ForwardedFrom | None = None
    replyToMessageId: int | None = Field(None, gt=0, description="The message this one replies to, if any")


class IngestBatch(BaseModel):
    messages: list[IngestPayload] = Field(max_length=1000)


@dataclass(frozen=True, slots=True)
class IngestMessage:
    """A payload that passed validation, in the types the store wants."""

    channel_id: str
    message_id: int
    timestamp: datetime
    text: str
    kind: str
    edit_date: datetime | None
    photos: list[Any]
    source: str
    chat_title: str | None
    forwarded_from: dict[str, Any] | None
    reply_to_message_id: int | None = None


def parse_iso(value: Any) -> datetime | None:
    """An ISO 8601 datetime (naive means UTC); None for anything else, impossible dates included."""
    if not isinstance(value, str) or not _ISO_RE.match(value.strip()):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def validate_ingest(obj: Any) -> tuple[IngestMessage | None, list[str], list[str]]:
    """Validate one payload: (message, problems, warnings). Every problem is reported, not just the first."""
    if not isinstance(obj, dict):
        return None, ["message must be a JSON object"], []
    details: list[str] = []
    warnings: list[str] = []

    channel = obj.get("channelId")
    if channel is None or channel == "":
        details.append("channelId is required")
    elif isinstance(channel, bool) or not isinstance(channel, str | int) or not _INT_RE.match(str(channel).strip()):
        details.append("channelId must be a string of an integer")
    elif not str(channel).strip().startswith("-100"):
        warnings.append("channelId does not start with -100")

    message_id = obj.get("messageId")
    if message_id is None:
        details.append("messageId is required")
    elif isinstance(message_id, bool) or not isinstance(message_id, int) or message_id <= 0:
        details.append("messageId must be a positive integer")
    elif message_id > 2**63 - 1:
        details.append("messageId is too large")

    raw_ts = obj.get("timestamp")
    timestamp = parse_iso(raw_ts)
    if raw_ts is None or raw_ts == "":
        details.append("timestamp is required")
    elif timestamp is None:
        details.append("timestamp must be valid ISO 8601 datetime")

    kind = obj.get("kind", "new")
    if kind is None:
        kind = "new"
    if kind not in KINDS:
        details.append("kind must be one of: new, edit, delete")

    raw_edit = obj.get("editDate")
    edit_date = parse_iso(raw_edit) if raw_edit is not None else None
    if raw_edit is not None and edit_date is None:
        details.append("editDate must be valid ISO 8601 datetime")
    elif kind == "edit" and raw_edit is None:
        details.append("editDate is required for kind edit")

    photos = obj.get("photos", [])
    if photos is None:
        photos = []
    if not isinstance(photos, list):
        details.append("photos must be a list")
        photos = []

    text = obj.get("text", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        details.append("text must be a string")
        text = ""
    elif len(text) > MAX_TEXT:
        details.append(f"text must be at most {MAX_TEXT} characters")
    elif "\x00" in text:
        details.append("text must not contain NUL characters")
    elif not text.strip() and not photos and kind != "delete":
        details.append("text is required unless photos are attached or kind is delete")

    source = obj.get("source", "user")
    if source is None:
        source = "user"
    if source not in SOURCES:
        details.append("source must be one of: user, bot, backfill, import, replay")

    title = obj.get("chatTitle")
    if title is not None and (not isinstance(title, str) or len(title) > 512 or "\x00" in title):
        details.append("chatTitle must be a string of at most 512 characters")

    forwarded = obj.get("forwardedFrom")
    if forwarded is not None and not isinstance(forwarded, dict):
        details.append("forwardedFrom must be an object or null")

    reply_to = obj.get("replyToMessageId")
    if reply_to is not None and (isinstance(reply_to, bool) or not isinstance(reply_to, int) or reply_to <= 0
                                 or reply_to > 2**63 - 1):
        details.append("replyToMessageId must be a positive integer or null")

    if details:
        return None, details, warnings
    assert timestamp is not None
    return (
        IngestMessage(
            channel_id=str(channel).strip(),
            message_id=int(message_id),  # type: ignore[arg-type]
            timestamp=timestamp,
            text=text,
            kind=kind,
            edit_date=edit_date,
            photos=photos,
            source=source,
            chat_title=title,
            forwarded_from=forwarded,
            reply_to_message_id=reply_to,
        ),
        [],
        warnings,
    )


def failure_reason(details: list[str]) -> str:
    """The metric label for a validation failure: the kind of the first problem."""
    first = details[0] if details else ""
    if first.endswith("is required") or "is required" in first:
        return "missing_field"
    if first.startswith("body") or first.startswith("message must"):
        return "invalid_body"
    return "invalid_field"


# Signal lifecycle responses (exact: the OpenAPI document says what every field may hold)

SIGNAL_STATUSES = ("open", "target_hit", "stopped", "closed", "cancelled", "expired")
Status = Literal["open", "target_hit", "stopped", "closed", "cancelled", "expired"]
EventName = Literal["target_hit", "stop_hit", "closed", "cancelled"]


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignalEvent(_Exact):
    """One update message, linked to the signal it names or to none."""

    id: int
    ts: int = Field(description="Epoch ms of the Telegram date")
    channel: str
    message_id: int
    signal_id: int | None = Field(description="The signal this update belongs to; null when it matches none")
    linked: bool
    asset: str
    event: EventName
    target: int | None = Field(description="The target's number; null for a final target or a stop")
    gain_pct: float | None = Field(description="The gain the message states")
    price: float | None = Field(description="The level the message quotes")
    reply_to_message_id: int | None
    raw_message: str
    edited: bool
    created_at: str
    updated_at: str


class SignalEventPage(_Exact):
    data: list[SignalEvent]
    count: int = Field(description="Events matching the filters, over all pages")


class ChannelPerformance(_Exact):
    """The figures of one channel's signals published in the window."""

    channel: str
    channel_title: str | None
    signals: int
    closed: int = Field(description="Trades that ended: stopped, closed, final target reached, or expired")
    cancelled: int
    target_1_hits: int
    final_target_hits: int
    stops: int
    target_1_hit_rate: float | None = Field(description="target_1_hits / (signals - cancelled)")
    final_target_hit_rate: float | None = Field(description="final_target_hits / (signals - cancelled)")
    stop_rate: float | None = Field(description="stops / (signals - cancelled)")
    mean_gain_pct: float | None
    median_gain_pct: float | None
    mean_seconds_to_first_target: float | None


class ChannelPerformanceList(_Exact):
    data: list[ChannelPerformance]


# Response bodies, for the OpenAPI document (the routes answer plain dicts shaped like these).

MessageKind = Literal["signal", "update", "noise"]


class IngestResult(BaseModel):
    """`POST /ingest`: stored (with what it parsed as), or a duplicate of a stored delivery."""

    success: Literal[True]
    messageId: int
    stored: bool
    kind: MessageKind | None = Field(None, description="When stored: what the message parsed as")
    signalId: int | None = Field(None, description="When stored: the signal it created or changed")
    reason: Literal["duplicate"] | None = Field(None, description="When not stored")


class BatchItemResult(BaseModel):
    """One message of a batch: stored, duplicate, or refused with its problems (the others go on)."""

    messageId: Any = Field(None, description="As given (null when the item had none)")
    stored: bool
    kind: MessageKind | None = None
    signalId: int | None = None
    reason: Literal["duplicate"] | None = None
    error: Literal["Validation failed"] | None = None
    details: list[str] | None = None


class IngestBatchResult(BaseModel):
    success: Literal[True]
    results: list[BatchItemResult]


class Signal(BaseModel):
    id: int
    ts: int = Field(description="Epoch milliseconds of the Telegram date")
    channel: str
    channel_title: str | None
    message_id: int
    signal_type: str
    asset: str
    buy_min: float
    buy_max: float
    target_1: float | None
    target_2: float | None
    target_final: float | None
    targets: list[float]
    stop: float | None
    raw_message: str
    source: str
    revision: int
    deleted: bool
    ingested_at: str
    created_at: str
    updated_at: str
    status: Status
    highest_target_hit: int | None
    closed_at: str | None
    gain_pct: float | None
    gain_source: str | None
    events_count: int


class SignalPage(BaseModel):
    data: list[Signal]
    count: int = Field(description="How many signals match the filters")


class OneSignal(BaseModel):
    data: Signal


class ChannelSummary(BaseModel):
    channel: str
    channel_title: str | None
    signal_count: int
    last_signal: str | None


class ChannelSummaries(BaseModel):
    data: list[ChannelSummary]


class SourceFigures(BaseModel):
    source: Literal["user", "bot", "backfill", "import", "replay"]
    messages: int
    last_message_at: str | None


class SourceFiguresList(BaseModel):
    data: list[SourceFigures]


class LogRecord(BaseModel):
    timestamp: str | None
    level: str | None
    message: str | None
    context: dict[str, Any]


class LogRecords(BaseModel):
    data: list[LogRecord]
