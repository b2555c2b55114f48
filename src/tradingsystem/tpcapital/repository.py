"""All of TP Capital's SQL: raw messages, signals, events, the channel registry and ingestion figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from tradingsystem.core.sql import fetch_page, like_pattern
from tradingsystem.tpcapital.models import IngestMessage

SIGNAL_COLUMNS = (
    "id, channel_id, message_id, message_date, channel_title, signal_type, asset, buy_min, buy_max, targets, "
    "target_final, stop, raw_message, source, revision, deleted, ingested_at, created_at, updated_at"
)
CHANNEL_COLUMNS = "id, label, channel_id, channel_type, description, status, created_at, updated_at"
# JSON columns travel as text[]: asyncpg would read a Python list inside a jsonb[] as a nested array.
INGEST_ARGS = (
    "$1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::timestamptz[], $7::text[]::jsonb[], "
    "$8::text[], $9::text[], $10::text[]::jsonb[], $11::text[]::jsonb[], $12::bigint[]"
)


@dataclass(frozen=True)
class SignalFilter:
    channel: str | None = None
    signal_type: str | None = None
    asset: str | None = None
    search: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_deleted: bool = False
    status: str | None = None


def _columns(messages: list[IngestMessage], parsed: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [m.channel_id for m in messages],
        [m.message_id for m in messages],
        [m.timestamp for m in messages],
        [m.text for m in messages],
        [m.kind for m in messages],
        [m.edit_date for m in messages],
        [_json(m.photos) for m in messages],
        [m.source for m in messages],
        [m.chat_title for m in messages],
        [None if m.forwarded_from is None else _json(m.forwarded_from) for m in messages],
        [_json(p) for p in parsed],
        [m.reply_to_message_id for m in messages],
    ]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def ingest(conn: asyncpg.Connection, messages: list[IngestMessage],
                 parsed: list[dict[str, Any]]) -> list[asyncpg.Record]:
    """Store and apply messages in one round trip; one result row (stored, signal_id) per message, in order."""
    return await conn.fetch(
        "SELECT stored, signal_id FROM tp_capital.ingest_batch(" + INGEST_ARGS + ")",
        *_columns(messages, parsed),
    )


def _signal_where(f: SignalFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${len(args)}"))

    if not f.include_deleted:
        clauses.append("NOT deleted")
    if f.channel:
        add("channel_id = ?", f.channel)
    if f.signal_type:
        add("lower(signal_type) = lower(?)", f.signal_type)
    if f.asset:
        add("asset = upper(?)", f.asset)
    if f.search:
        add("(asset ILIKE ? OR raw_message ILIKE ?)", like_pattern(f.search))
    if f.since:
        add("message_date >= ?", f.since)
    if f.until:
        add("message_date <= ?", f.until)
    if f.status:
        add("status = ?", f.status)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def list_signals(conn: asyncpg.Connection, f: SignalFilter, rules: StateRules, limit: int,
                       offset: int) -> tuple[list[asyncpg.Record], int]:
    where, args = _signal_where(f)
    source = _with_state("tp_capital.signal_event_totals_live", len(args) + 1) + where
    return await fetch_page(conn, SIGNAL_COLUMNS + STATE_COLUMNS, source, "message_date DESC, id DESC",
                            [*args, *rules.args()], limit, offset)


async def get_signal(conn: asyncpg.Connection, signal_id: int, rules: StateRules) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SIGNAL_COLUMNS}{STATE_COLUMNS} FROM {_with_state('tp_capital.signal_event_totals_live', 2)} "
        "WHERE id = $1", signal_id, *rules.args(),
    )


async def soft_delete_signal(conn: asyncpg.Connection, signal_id: int) -> bool:
    row = await conn.fetchrow(
        "UPDATE tp_capital.signals SET deleted = true, updated_at = now() WHERE id = $1 "
        "RETURNING channel_id, asset, message_date", signal_id
    )
    if row is None:
        return False
    await _relink_deleted(conn, [row])
    return True


async def _relink_deleted(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
    """The updates of deleted signals now belong to another open trade of the asset, or to none."""
    if rows:
        await conn.execute("SELECT tp_capital.relink($1::text[], $2::text[], $3::timestamptz[])",
                           [r["channel_id"] for r in rows], [r["asset"] for r in rows],
                           [r["message_date"] for r in rows])


# Signal lifecycle: states, events, channel performance

# A signal's state columns (see tp_capital.signal_state), next to its own.
STATE_COLUMNS = ", status, highest_target_hit, closed_at, gain_pct, gain_source, events_count, final_target"
EVENT_COLUMNS = (
    "id, channel_id, message_id, message_date, signal_id, asset, event, target, gain_pct, price, "
    "reply_to_message_id, raw_message, edit_key, created_at, updated_at"
)


@dataclass(frozen=True)
class StateRules:
    """What a signal's state depends on besides its events: the clock, the swing horizon, the session's zone."""

    horizon_days: int
    timezone: str
    now: datetime | None = None

    def args(self) -> list[Any]:
        return [self.now or datetime.now(UTC), self.horizon_days, self.timezone]


@dataclass(frozen=True)
class EventFilter:
    linked: bool | None = None
    channel: str | None = None
    asset: str | None = None
    event: str | None = None
    signal_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _with_state(totals: str, first: int) -> str:
    """Signals joined with their state; parameters $first..$first+2 are the `StateRules` arguments."""
    n, d, z = f"${first}", f"${first + 1}", f"${first + 2}"
    return (
        "tp_capital.signals s LEFT JOIN LATERAL (SELECT * FROM " + totals + " t WHERE t.signal_id = s.id) t ON true "
        "CROSS JOIN LATERAL tp_capital.signal_state(s.signal_type, s.message_date, s.buy_min, s.buy_max, s.targets, "
        "s.target_final, s.stop, t.events, t.max_target, t.final_hits, t.last_target_at, t.stop_at, t.close_at, "
        f"t.cancel_at, t.last_event_at, t.target_gain, t.stop_gain, t.close_gain, {n}, {d}, {z}) st"
    )


async def list_events(conn: asyncpg.Connection, f: EventFilter, limit: int,
                      offset: int) -> tuple[list[asyncpg.Record], int]:
    clauses: list[str] = []
    args: list[Any] = []
    for sql, value in (("channel_id = ?", f.channel), ("asset = upper(?)", f.asset), ("event = ?", f.event),
                       ("signal_id = ?", f.signal_id), ("message_date >= ?", f.since),
                       ("message_date <= ?", f.until)):
        if value is not None:
            args.append(value)
            clauses.append(sql.replace("?", f"${len(args)}"))
    if f.linked is not None:
        clauses.append("signal_id IS NOT NULL" if f.linked else "signal_id IS NULL")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return await fetch_page(conn, EVENT_COLUMNS, f"tp_capital.signal_events{where}", "message_date DESC, id DESC",
                            args, limit, offset)


async def signal_exists(conn: asyncpg.Connection, signal_id: int) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tp_capital.signals WHERE id = $1)", signal_id))


async def timescaledb_enabled(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"))


async def refresh_event_days(conn: asyncpg.Connection) -> None:
    """Bring the continuous aggregate up to date with edits to old events (outside any transaction)."""
    await conn.execute("CALL refresh_continuous_aggregate('tp_capital.signal_event_days', NULL, NULL)")


async def channel_performance(conn: asyncpg.Connection, rules: StateRules, since: datetime | None,
                              until: datetime | None, signal_type: str | None,
                              channel: str | None = None) -> list[asyncpg.Record]:
    """Per channel: the figures of the signals published in the window (docs/api.md, "Channel performance")."""
    clauses = ["NOT s.deleted"]
    args: list[Any] = []
    for sql, value in (("s.message_date >= ?", since), ("s.message_date <= ?", until),
                       ("lower(s.signal_type) = lower(?)", signal_type), ("s.channel_id = ?", channel)):
        if value is not None:
            args.append(value)
            clauses.append(sql.replace("?", f"${len(args)}"))
    source = _with_state("tp_capital.signal_event_totals", len(args) + 1)
    return await conn.fetch(
        "WITH per AS (SELECT s.channel_id, s.channel_title, s.message_date, t.first_target_at, st.* FROM "
        f"{source} WHERE {' AND '.join(clauses)}), "
        "counted AS (SELECT channel_id, (array_agg(channel_title ORDER BY message_date DESC) "
        "FILTER (WHERE channel_title IS NOT NULL))[1] AS channel_title, count(*) AS signals, "
        "count(*) FILTER (WHERE closed_at IS NOT NULL AND status <> 'cancelled') AS closed, "
        "count(*) FILTER (WHERE status = 'cancelled') AS cancelled, "
        "count(*) FILTER (WHERE highest_target_hit >= 1) AS target_1_hits, "
        "count(*) FILTER (WHERE highest_target_hit >= final_target) AS final_target_hits, "
        "count(*) FILTER (WHERE status = 'stopped') AS stops, "
        "round(avg(gain_pct), 2) AS mean_gain_pct, "
        "round((percentile_cont(0.5) WITHIN GROUP (ORDER BY gain_pct))::numeric, 2) AS median_gain_pct, "
        "round(avg(extract(epoch FROM first_target_at - message_date))) AS mean_seconds_to_first_target "
        "FROM per GROUP BY channel_id) "
        "SELECT *, round(target_1_hits::numeric / nullif(signals - cancelled, 0), 4) AS target_1_hit_rate, "
        "round(final_target_hits::numeric / nullif(signals - cancelled, 0), 4) AS final_target_hit_rate, "
        "round(stops::numeric / nullif(signals - cancelled, 0), 4) AS stop_rate "
        "FROM counted ORDER BY signals DESC, channel_id",
        *args, *rules.args(),
    )


async def soft_delete_by_ingested_at(conn: asyncpg.Connection, since: datetime, until: datetime) -> int:
    """Soft-delete the signals stamped in [since, until]; stamps are unique, so an exact stamp names one row."""
    done = await conn.fetch(
        "UPDATE tp_capital.signals SET deleted = true, updated_at = now() "
        "WHERE ingested_at BETWEEN $1 AND $2 RETURNING id, channel_id, asset, message_date", since, until,
    )
    await _relink_deleted(conn, done)
    return len(done)


async def list_channels(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT channel_id, (array_agg(channel_title ORDER BY message_date DESC) "
        "FILTER (WHERE channel_title IS NOT NULL))[1] AS channel_title, count(*) AS signal_count, "
        "max(message_date) AS last_signal FROM tp_capital.signals WHERE NOT deleted "
        "GROUP BY channel_id ORDER BY max(message_date) DESC"
    )


async def source_figures(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT source, count(*) AS messages, max(received_at) AS last_message_at FROM tp_capital.messages "
        "GROUP BY source"
    )


async def forwarded_messages(conn: asyncpg.Connection, limit: int, channel: str | None, since: datetime | None,
                             until: datetime | None) -> list[asyncpg.Record]:
    clauses: list[str] = []
    args: list[Any] = []
    for sql, value in (("channel_id = ?", channel), ("message_date >= ?", since), ("message_date <= ?", until)):
        if value is not None:
            args.append(value)
            clauses.append(sql.replace("?", f"${len(args)}"))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return await conn.fetch(
        "SELECT id, channel_id, message_id, text, message_date, photos, received_at, kind, edit_date, chat_title "
        f"FROM tp_capital.messages{where} ORDER BY message_date DESC, id DESC LIMIT ${len(args) + 1}",
        *args, limit,
    )


# The channel registry


async def registry_list(conn: asyncpg.Connection, status: str | None, channel_type: str | None) -> list[asyncpg.Record]:
    clauses: list[str] = []
    args: list[Any] = []
    for sql, value in (("status = ?", status), ("channel_type = ?", channel_type)):
        if value is not None:
            args.append(value)
            clauses.append(sql.replace("?", f"${len(args)}"))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return await conn.fetch(
        f"SELECT {CHANNEL_COLUMNS} FROM tp_capital.telegram_channels{where} ORDER BY created_at, id", *args
    )


async def registry_labels(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT DISTINCT ON (channel_id) channel_id, label FROM tp_capital.telegram_channels "
                            "ORDER BY channel_id, channel_type DESC, created_at")


async def registry_get(conn: asyncpg.Connection, channel_pk: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CHANNEL_COLUMNS} FROM tp_capital.telegram_channels WHERE id = $1",
                               channel_pk)


async def registry_insert(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "INSERT INTO tp_capital.telegram_channels (label, channel_id, channel_type, description, status) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT ON CONSTRAINT telegram_channels_unique DO NOTHING "
        f"RETURNING {CHANNEL_COLUMNS}",
        values["label"], values["channel_id"], values["channel_type"], values["description"], values["status"],
    )


async def registry_update(conn: asyncpg.Connection, channel_pk: str,
                          changes: dict[str, Any]) -> asyncpg.Record | None:
    sets = [f"{column} = ${i + 2}" for i, column in enumerate(changes)]
    sets.append("updated_at = now()")
    return await conn.fetchrow(
        f"UPDATE tp_capital.telegram_channels SET {', '.join(sets)} WHERE id = $1 RETURNING {CHANNEL_COLUMNS}",
        channel_pk, *changes.values(),
    )


async def registry_delete(conn: asyncpg.Connection, channel_pk: str) -> bool:
    done = await conn.fetchval("DELETE FROM tp_capital.telegram_channels WHERE id = $1 RETURNING true", channel_pk)
    return done is not None


# Re-parsing history


async def messages_page(conn: asyncpg.Connection, after_id: int, size: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, message_date, text, kind, parsed FROM tp_capital.messages WHERE id > $1 ORDER BY id LIMIT $2",
        after_id, size,
    )


async def count_messages(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM tp_capital.messages"))


async def store_parses(conn: asyncpg.Connection, ids: list[int], dates: list[datetime],
                       parsed: list[dict[str, Any]]) -> None:
    await conn.execute(
        "UPDATE tp_capital.messages m SET parsed = u.parsed::jsonb FROM unnest($1::bigint[], $2::timestamptz[], "
        "$3::text[]) AS u(id, message_date, parsed) WHERE m.id = u.id AND m.message_date = u.message_date "
        "AND m.parsed IS DISTINCT FROM u.parsed::jsonb",
        ids, dates, [_json(p) for p in parsed],
    )


async def rebuild_derived(conn: asyncpg.Connection) -> int:
    """Re-derive every signal and event from the stored messages and their parses; returns signals refreshed."""
    # Deliveries wait for the rebuild, so that every link is made under one set of rules from one history.
    await conn.execute("LOCK TABLE tp_capital.signal_events IN EXCLUSIVE MODE")
    await conn.execute("DELETE FROM tp_capital.signal_events")
    keys = await conn.fetchrow(
        "SELECT array_agg(channel_id) AS channels, array_agg(message_id) AS ids, count(*) AS n FROM "
        "(SELECT DISTINCT channel_id, message_id FROM tp_capital.messages) AS k"
    )
    if keys["n"]:
        await conn.execute("SELECT tp_capital.refresh_signals($1::text[], $2::bigint[])", keys["channels"], keys["ids"])
    # Signals whose messages no longer parse as signals keep their row but are no longer backed: mark deleted.
    await conn.execute(
        "UPDATE tp_capital.signals s SET deleted = true, updated_at = now() WHERE NOT s.deleted AND NOT EXISTS ("
        "SELECT 1 FROM tp_capital.messages m WHERE m.channel_id = s.channel_id AND m.message_id = s.message_id "
        "AND m.kind <> 'delete' AND m.parsed ->> 'kind' = 'signal')"
    )
    if keys["n"]:
        await conn.execute("SELECT tp_capital.refresh_events($1::text[], $2::bigint[])", keys["channels"], keys["ids"])
    # Every (channel, asset) from its first event on: the same links whatever order history arrived in.
    await conn.execute(
        "SELECT tp_capital.relink(array_agg(channel_id), array_agg(asset), array_agg(NULL::timestamptz)) "
        "FROM (SELECT DISTINCT channel_id, asset FROM tp_capital.signal_events) AS g"
    )
    return int(keys["n"])


# ---------------------------------------------------------------- TimescaleDB compression of raw messages


async def messages_hypertable(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The hypertable row of tp_capital.messages (with `compression_enabled`), None when it is a plain table."""
    return await conn.fetchrow(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = 'tp_capital' AND hypertable_name = 'messages'"
    )


async def messages_compression_policy(conn: asyncpg.Connection) -> str | None:
    """`compress_after` of the compression policy on raw messages (e.g. '30 days'), None without one."""
    return await conn.fetchval(
        "SELECT config->>'compress_after' FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_schema = 'tp_capital' AND hypertable_name = 'messages'"
    )


async def enable_messages_compression(conn: asyncpg.Connection) -> None:
    # Segments per channel, ordered by every column of the unique keys, so that a redelivery's ON CONFLICT check
    # on a compressed chunk decompresses only the rows of that channel.
    await conn.execute(
        "ALTER TABLE tp_capital.messages SET (timescaledb.compress, timescaledb.compress_segmentby = 'channel_id', "
        "timescaledb.compress_orderby = 'message_date DESC, message_id, kind, edit_key, id')"
    )


async def add_messages_compression_policy(conn: asyncpg.Connection, after_days: int) -> None:
    await conn.execute(
        "SELECT add_compression_policy('tp_capital.messages', compress_after => make_interval(days => $1))",
        after_days,
    )


async def remove_messages_compression_policy(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT remove_compression_policy('tp_capital.messages', if_exists => true)")
