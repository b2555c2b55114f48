"""Reads a Telegram Desktop channel export (`result.json`) and turns its messages into ingest payloads."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import structlog

from tradingsystem.gateway.sources.common import (
    EXPORT_PHOTO_PREFIX,
    iso_from_unix,
    iso_utc,
    make_payload,
)
from tradingsystem.gateway.types import IngestPayload, normalize_channel_id

log = structlog.get_logger(__name__)

_CHUNK = 1 << 16
_WHITESPACE = " \t\n\r"
# Telegram Desktop writes this instead of a path when media were not included in the export.
_NOT_INCLUDED = "(File not included"


class ExportError(ValueError):
    """The file is not a Telegram Desktop single-chat export (or is not valid JSON)."""


class ExportStats:
    """What a pass over an export produced: messages seen, payloads yielded, and what was skipped why."""

    def __init__(self) -> None:
        self.messages = 0
        self.payloads = 0
        self.skipped: Counter[str] = Counter()

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "payloads": self.payloads,
            "skipped": self.skipped_total,
            "skippedReasons": dict(self.skipped),
        }


def flatten_text(text: Any) -> str:
    """The plain text of an export `text` field: a string, or a list of strings and `{"type","text"}` pieces."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        parts: list[str] = []
        for piece in text:
            if isinstance(piece, str):
                parts.append(piece)
            elif isinstance(piece, dict) and isinstance(piece.get("text"), str):
                parts.append(piece["text"])
        return "".join(parts)
    return ""


def _timestamp(message: dict[str, Any], unix_key: str, local_key: str) -> str | None:
    # `date` is the exporting computer's local time without an offset; `date_unixtime` is the truth.
    unix = message.get(unix_key)
    if unix is not None and str(unix).strip().lstrip("-").isdigit():
        return iso_from_unix(int(str(unix)))
    local = message.get(local_key)
    if isinstance(local, str) and local:
        try:
            return iso_utc(datetime.fromisoformat(local))
        except ValueError:
            return None
    return None


def _reply_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def export_message_to_payloads(
    message: Any,
    *,
    channel_id: str,
    chat_title: str | None,
    source: str,
    include_edits: bool = True,
    stats: ExportStats | None = None,
) -> list[IngestPayload]:
    """Payloads for one exported message: `[]` when it is skipped (the reason is counted in `stats`).

    An edited message yields its `new` payload and, with `include_edits`, an `edit` payload dated
    `edited_unixtime`. The export only keeps the final text, so both carry it: the `new` one fills a
    gap in the database, and the `edit` one updates a row that still holds the original text; the
    API drops whichever of the two it already has.
    """
    counter = stats.skipped if stats is not None else Counter[str]()
    if not isinstance(message, dict):
        counter["malformed"] += 1
        return []
    if message.get("type") != "message":
        counter["service"] += 1
        return []
    message_id = message.get("id")
    if not isinstance(message_id, int) or isinstance(message_id, bool) or message_id <= 0:
        counter["malformed"] += 1
        return []
    timestamp = _timestamp(message, "date_unixtime", "date")
    if timestamp is None:
        counter["malformed"] += 1
        return []
    text = flatten_text(message.get("text"))
    photos: list[str] = []
    photo = message.get("photo")
    # A photo left out of the export cannot be resolved later, so it is not referenced at all.
    if isinstance(photo, str) and photo and not photo.startswith(_NOT_INCLUDED):
        photos.append(f"{EXPORT_PHOTO_PREFIX}{photo}")
    if not text.strip() and not photos:
        counter["sticker" if message.get("media_type") == "sticker" else "empty"] += 1
        return []
    new = make_payload(
        channel_id=channel_id,
        message_id=message_id,
        timestamp=timestamp,
        text=text,
        kind="new",
        source=source,
        photos=photos,
        chat_title=chat_title,
        reply_to_message_id=_reply_id(message.get("reply_to_message_id")),
    )
    result = [new]
    if include_edits and ("edited_unixtime" in message or "edited" in message):
        edit_date = _timestamp(message, "edited_unixtime", "edited")
        if edit_date is not None:
            result.append({**new, "kind": "edit", "editDate": edit_date, "photos": list(photos)})
    return result


class _Scanner:
    """Pulls JSON values one at a time out of a text stream so big exports never sit in memory whole."""

    def __init__(self, stream: IO[str], chunk_size: int) -> None:
        self._stream = stream
        self._chunk = chunk_size
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._stream.read(self._chunk)
        if not data:
            self._eof = True
            return False
        if self._pos > self._chunk:
            self._buf = self._buf[self._pos :]
            self._pos = 0
        self._buf += data
        return True

    def peek(self) -> str:
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                raise ExportError("unexpected end of file")

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise ExportError(f"expected {char!r} at offset {self._pos}")
        self._pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                result, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._fill():
                    continue
                raise ExportError(f"invalid JSON: {exc.msg}") from exc
            # A number (or anything) touching the end of the buffer may continue in the next chunk.
            if end == len(self._buf) and self._fill():
                continue
            self._pos = end
            return result


class TelegramExport:
    """A Telegram Desktop single-channel export; `payloads()` streams it, `stats` counts what happened."""

    def __init__(
        self,
        path: Path | str,
        *,
        source: str = "import",
        include_edits: bool = True,
        chunk_size: int = _CHUNK,
    ) -> None:
        self.path = Path(path)
        self.source = source
        self.include_edits = include_edits
        self.chunk_size = chunk_size
        self.channel_id: str | None = None
        self.name: str | None = None
        self.stats = ExportStats()

    def payloads(self) -> Iterator[IngestPayload]:
        """Yield the payloads in file order (Telegram Desktop writes messages oldest first)."""
        self.stats = ExportStats()
        try:
            with self.path.open("r", encoding="utf-8-sig") as stream:
                yield from self._stream(_Scanner(stream, self.chunk_size))
        except OSError as exc:
            raise ExportError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        log.info("Export read", path=str(self.path), channel_id=self.channel_id, **self.stats.as_dict())

    def _stream(self, scanner: _Scanner) -> Iterator[IngestPayload]:
        scanner.expect("{")
        header: dict[str, Any] = {}
        saw_messages = False
        if scanner.peek() == "}":
            raise ExportError("the export has no messages")
        while True:
            key = scanner.value()
            if not isinstance(key, str):
                raise ExportError("object key expected")
            scanner.expect(":")
            if key == "messages" and not saw_messages:
                saw_messages = True
                self._take_header(header)
                yield from self._messages(scanner)
            else:
                header[key] = scanner.value()
            if scanner.peek() == ",":
                scanner.expect(",")
                continue
            scanner.expect("}")
            break
        if not saw_messages:
            raise ExportError("the export has no messages list (export a single channel, JSON format)")

    def _take_header(self, header: dict[str, Any]) -> None:
        raw_id = header.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).lstrip("-").isdigit():
            # Telegram Desktop writes name, type and id before messages; anything else is not an export
            # of a single chat.
            raise ExportError("the export has no channel id before its messages")
        self.channel_id = normalize_channel_id(raw_id)
        name = header.get("name")
        self.name = name if isinstance(name, str) else None

    def _messages(self, scanner: _Scanner) -> Iterator[IngestPayload]:
        assert self.channel_id is not None
        scanner.expect("[")
        if scanner.peek() == "]":
            scanner.expect("]")
            return
        while True:
            message = scanner.value()
            self.stats.messages += 1
            for payload in export_message_to_payloads(
                message,
                channel_id=self.channel_id,
                chat_title=self.name,
                source=self.source,
                include_edits=self.include_edits,
                stats=self.stats,
            ):
                self.stats.payloads += 1
                yield payload
            if scanner.peek() == ",":
                scanner.expect(",")
                continue
            scanner.expect("]")
            return


def read_export(path: Path | str, *, source: str = "import", include_edits: bool = True) -> Iterator[IngestPayload]:
    """Shorthand for `TelegramExport(path, ...).payloads()` when the counts are not needed."""
    return TelegramExport(path, source=source, include_edits=include_edits).payloads()


def bundled_sample_export() -> Path:
    """The sample channel export shipped with the package (used by the zero-configuration demo)."""
    return Path(__file__).with_name("data") / "sample_export.json"
