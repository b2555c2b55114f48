"""How every service writes a moment: ISO 8601 in UTC, milliseconds (microseconds where asked), `Z` suffix."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_ms(moment: datetime | None = None) -> str:
    """`moment` (default: now) as `2025-10-24T19:30:39.000Z`; a naive datetime is taken as UTC."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso_ms(moment)


def iso_us(moment: datetime) -> str:
    """`moment` as `2025-10-24T19:30:39.123456Z`: for stamps that must stay distinct below a millisecond."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
