"""TP Capital's rules: who may ingest, how a message becomes a signal or an update, what queries return."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg
import structlog

from tradingsystem.core.db import Database
from tradingsystem.core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from tradingsystem.core.group_commit import GroupCommit
from tradingsystem.core.migrations import MIGRATION_LOCK_KEY, timescaledb_in_use
from tradingsystem.core.timeutil import iso_ms_or_none, iso_us
from tradingsystem.tpcapital import repository as repo
from tradingsystem.tpcapital.metrics import TpCapitalMetrics
from tradingsystem.tpcapital.models import IngestMessage, failure_reason, validate_ingest
from tradingsystem.tpcapital.parser import Update, parse_message, to_json_dict

log = structlog.get_logger(__name__)
MAX_BATCH = 1000
# Single deliveries waiting on the database at once share a statement and a commit (decision 13). Two groups
# may be with the database together, so that one group's commit overlaps the next group's statement.
GROUP_INFLIGHT = 2
SOURCES = ("user", "bot", "backfill", "import", "replay")


def _stored(value: Any) -> Any:
    """Decimals as exact strings for storage in jsonb (numbers there would be floats). A parse's values are
    scalars or lists of prices (`parser.to_json_dict`), so one level is all there is to convert."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [str(v) if isinstance(v, Decimal) else v for v in value]
    return value


def parse_text(text: str) -> dict[str, Any]:
    """The stored parse: the contract's JSON shape, plus the price an update quotes (used to link it)."""
    result = parse_message(text)
    parsed = to_json_dict(result)
    if isinstance(result, Update):
        parsed["price"] = result.price
    return {key: _stored(value) for key, value in parsed.items()}


def parse_for_storage(message: IngestMessage) -> dict[str, Any]:
    if message.kind == "delete":
        return {"kind": "noise", "reason": "deleted"}
    return parse_text(message.text)


def _number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def signal_json(row: asyncpg.Record) -> dict[str, Any]:
    targets = [_number(t) for t in row["targets"]]
    return {
        "id": row["id"],
        "ts": int(row["message_date"].timestamp() * 1000),
        "channel": row["channel_id"],
        "channel_title": row["channel_title"],
        "message_id": row["message_id"],
        "signal_type": row["signal_type"],
        "asset": row["asset"],
        "buy_min": _number(row["buy_min"]),
        "buy_max": _number(row["buy_max"]),
        "target_1": targets[0] if targets else None,
        "target_2": targets[1] if len(targets) > 1 else None,
        "target_final": _number(row["target_final"]),
        "targets": targets,
        "stop": _number(row["stop"]),
        "raw_message": row["raw_message"],
        "source": row["source"],
        "revision": row["revision"],
        "deleted": row["deleted"],
        # Microseconds: the stamp is unique per row (migration 0007) and names a row for `DELETE /signals`.
        "ingested_at": iso_us(row["ingested_at"]),
        "created_at": iso_ms_or_none(row["created_at"]),
        "updated_at": iso_ms_or_none(row["updated_at"]),
        **lifecycle_json(row),
    }


def lifecycle_json(row: asyncpg.Record) -> dict[str, Any]:
    """A signal's state, derived in SQL from its events (tp_capital.signal_state)."""
    return {
        "status": row["status"],
        "highest_target_hit": row["highest_target_hit"],
        "closed_at": iso_ms_or_none(row["closed_at"]),
        "gain_pct": _number(row["gain_pct"]),
        "gain_source": row["gain_source"],
        "events_count": row["events_count"],
    }


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ts": int(row["message_date"].timestamp() * 1000),
        "channel": row["channel_id"],
        "message_id": row["message_id"],
        "signal_id": row["signal_id"],
        "linked": row["signal_id"] is not None,
        "asset": row["asset"],
        "event": row["event"],
        "target": row["target"],
        "gain_pct": _number(row["gain_pct"]),
        "price": _number(row["price"]),
        "reply_to_message_id": row["reply_to_message_id"],
        "raw_message": row["raw_message"],
        "edited": row["edit_key"] > 0,
        "created_at": iso_ms_or_none(row["created_at"]),
        "updated_at": iso_ms_or_none(row["updated_at"]),
    }


def performance_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "channel": row["channel_id"],
        "channel_title": row["channel_title"],
        "signals": row["signals"],
        "closed": row["closed"],
        "cancelled": row["cancelled"],
        "target_1_hits": row["target_1_hits"],
        "final_target_hits": row["final_target_hits"],
        "stops": row["stops"],
        "target_1_hit_rate": _number(row["target_1_hit_rate"]),
        "final_target_hit_rate": _number(row["final_target_hit_rate"]),
        "stop_rate": _number(row["stop_rate"]),
        "mean_gain_pct": _number(row["mean_gain_pct"]),
        "median_gain_pct": _number(row["median_gain_pct"]),
        "mean_seconds_to_first_target": _number(row["mean_seconds_to_first_target"]),
    }


def channel_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "label": row["label"],
        "channel_id": row["channel_id"],
        "channel_type": row["channel_type"],
        "description": row["description"],
        "status": row["status"],
        "created_at": iso_ms_or_none(row["created_at"]),
        "updated_at": iso_ms_or_none(row["updated_at"]),
    }


class TokenChecker:
    """The gateway's shared secret: a comma list so that a token can be rotated without downtime."""

    def __init__(self, tokens: str) -> None:
        self.tokens = [t.strip().encode() for t in tokens.split(",") if t.strip()]

    def valid(self, presented: str | None) -> bool:
        if not presented:
            return False
        candidate = presented.encode()
        ok = False
        for token in self.tokens:  # compare with every token, so timing says nothing about which matched
            ok |= hmac.compare_digest(candidate, token)
        return ok


class TpCapitalService:
    def __init__(self, db: Database, metrics: TpCapitalMetrics, tokens: TokenChecker,
                 rules: repo.StateRules | None = None) -> None:
        self.db = db
        self.metrics = metrics
        self.tokens = tokens
        self.rules = rules or repo.StateRules(horizon_days=30, timezone="America/Sao_Paulo")
        self._timescaledb: bool | None = None
        self._group: GroupCommit[tuple[IngestMessage, dict[str, Any]], asyncpg.Record] = GroupCommit(
            self._store_group, max_size=MAX_BATCH, max_inflight=GROUP_INFLIGHT)

    async def apply_message_compression(self, after_days: int) -> str:
        """Make the compression policy on raw messages match MESSAGES_COMPRESS_AFTER_DAYS (0: no policy).

        Returns what holds afterwards: `on`, `off` or `unavailable` (plain PostgreSQL). Replicas starting together
        take the migration lock, so one of them changes the policy and the others find it in place.
        """
        wanted = f"{after_days} days" if after_days > 0 else None

        async def apply(conn: asyncpg.Connection) -> str:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            if not await timescaledb_in_use(conn) or (hypertable := await repo.messages_hypertable(conn)) is None:
                if wanted:
                    log.warning("MESSAGES_COMPRESS_AFTER_DAYS is set but raw messages are not a TimescaleDB "
                                "hypertable here; no compression", compress_after=wanted)
                return "unavailable"
            current = await repo.messages_compression_policy(conn)
            if current == wanted:
                return "on" if wanted else "off"
            if current is not None:
                await repo.remove_messages_compression_policy(conn)
            if wanted is None:
                log.info("Compression policy on raw messages removed (compressed chunks stay compressed)",
                         was=current)
                return "off"
            if not hypertable["compression_enabled"]:
                await repo.enable_messages_compression(conn)
            await repo.add_messages_compression_policy(conn, after_days)
            log.info("Compression policy on raw messages set", compress_after=wanted, was=current)
            return "on"

        return await self.db.run(apply, transaction=True)

    def authenticate(self, token: str | None) -> None:
        if not self.tokens.valid(token):
            self.metrics.auth_failures.inc()
            log.warning("Rejected ingest: invalid or missing gateway token")
            raise Unauthorized("Invalid or missing authentication token")

    def _reject(self, details: list[str]) -> None:
        self.metrics.validation_failures.labels(failure_reason(details)).inc()
        log.info("Rejected payload", details=details)

    @staticmethod
    def _outcome(message: IngestMessage, parsed: dict[str, Any], row: asyncpg.Record) -> dict[str, Any]:
        if not row["stored"]:
            return {"success": True, "messageId": message.message_id, "stored": False, "reason": "duplicate"}
        return {"success": True, "messageId": message.message_id, "stored": True, "kind": parsed["kind"],
                "signalId": row["signal_id"]}

    def _count(self, outcomes: list[dict[str, Any]]) -> None:
        """The stored/duplicate/parse counters, once per request rather than once per message."""
        kinds: dict[str, int] = {}
        for outcome in outcomes:
            if outcome["stored"]:
                kinds[outcome["kind"]] = kinds.get(outcome["kind"], 0) + 1
        stored = sum(kinds.values())
        if stored:
            self.metrics.stored.inc(stored)
        if len(outcomes) > stored:
            self.metrics.duplicates.inc(len(outcomes) - stored)
        for kind, n in kinds.items():
            self.metrics.parsed_by_kind[kind].inc(n)

    async def ingest_one(self, payload: Any) -> dict[str, Any]:
        message, details, warnings = validate_ingest(payload)
        if message is None:
            self._reject(details)
            raise ValidationFailed(details)
        self.metrics.received.inc()
        if warnings:
            log.warning("Unusual payload", warnings=warnings, channel_id=message.channel_id)
        parsed = parse_for_storage(message)
        # Answered only after the group that holds this message has committed.
        row = await self._group.submit((message, parsed))
        outcome = self._outcome(message, parsed, row)
        self._count([outcome])
        return outcome

    async def _store_group(self, group: list[tuple[IngestMessage, dict[str, Any]]]
                           ) -> list[asyncpg.Record | BaseException]:
        """One statement and one commit for the group; each message's own row (stored or duplicate), in order."""
        # Sorted by message key, like a batch, so that concurrent groups take their per-message locks in one order.
        self.metrics.ingest_group_size.observe(len(group))
        order = sorted(range(len(group)), key=lambda i: (group[i][0].channel_id, group[i][0].message_id))
        try:
            rows = await self.db.run(lambda c: repo.ingest(c, [group[i][0] for i in order],
                                                           [group[i][1] for i in order]))
        except asyncpg.PostgresError:
            if len(group) == 1:
                raise
            # One message the database refuses (a NUL character, say) must not fail the others: nothing of the
            # group was committed, so each goes again alone and gets its own answer.
            return [await self._store_alone(item) for item in group]
        outcomes: list[asyncpg.Record | BaseException] = list(rows)
        for i, row in zip(order, rows, strict=True):
            outcomes[i] = row
        return outcomes

    async def _store_alone(self, item: tuple[IngestMessage, dict[str, Any]]) -> asyncpg.Record | BaseException:
        try:
            rows = await self.db.run(lambda c: repo.ingest(c, [item[0]], [item[1]]))
        except asyncpg.PostgresError as exc:
            return exc
        return rows[0]

    async def ingest_batch(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._reject(["messages is required"])
            raise ValidationFailed(["messages is required and must be a list"])
        items: list[Any] = body["messages"]
        if len(items) > MAX_BATCH:
            self.metrics.validation_failures.labels("batch_too_large").inc()
            raise ValidationFailed([f"messages must have at most {MAX_BATCH} items"])
        results: list[dict[str, Any] | None] = [None] * len(items)
        valid: list[tuple[int, IngestMessage, dict[str, Any]]] = []
        for index, item in enumerate(items):
            message, details, _ = validate_ingest(item)
            if message is None:
                self._reject(details)
                given = item.get("messageId") if isinstance(item, dict) else None
                results[index] = {"messageId": given, "stored": False, "error": "Validation failed",
                                  "details": details}
                continue
            valid.append((index, message, parse_for_storage(message)))
        if valid:
            self.metrics.received.inc(len(valid))
            # Sorted by message key so that concurrent batches take their per-message locks in one order.
            ordered = sorted(valid, key=lambda v: (v[1].channel_id, v[1].message_id))
            rows = await self.db.run(
                lambda c: repo.ingest(c, [m for _, m, _ in ordered], [p for _, _, p in ordered])
            )
            outcomes = [self._outcome(message, parsed, row) for (_, message, parsed), row in zip(ordered, rows,
                                                                                                 strict=True)]
            self._count(outcomes)
            for (index, _, _), outcome in zip(ordered, outcomes, strict=True):
                outcome.pop("success")
                if outcome.get("signalId") is None:
                    outcome.pop("signalId", None)
                results[index] = outcome
        return {"success": True, "results": results}

    async def list_signals(self, f: repo.SignalFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self.db.run(lambda c: repo.list_signals(c, f, self.rules, limit, offset))
        return [signal_json(r) for r in rows], total

    async def get_signal(self, signal_id: int) -> dict[str, Any]:
        row = await self.db.run(lambda c: repo.get_signal(c, signal_id, self.rules))
        if row is None:
            raise NotFound(f"Signal {signal_id} not found")
        return signal_json(row)

    async def delete_signal(self, signal_id: int) -> None:
        if not await self.db.run(lambda c: repo.soft_delete_signal(c, signal_id), transaction=True):
            raise NotFound(f"Signal {signal_id} not found")

    async def delete_signal_stamped(self, since: datetime, until: datetime) -> None:
        """The old `DELETE /signals {"ingestedAt"}`: soft-delete the signal with that stamp."""
        if not await self.db.run(lambda c: repo.soft_delete_by_ingested_at(c, since, until),
                                 transaction=True):
            raise NotFound("Signal not found")

    # Signal lifecycle

    async def list_events(self, f: repo.EventFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self.db.run(lambda c: repo.list_events(c, f, limit, offset))
        return [event_json(r) for r in rows], total

    async def signal_events(self, signal_id: int, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        async def run(c: asyncpg.Connection) -> tuple[list[asyncpg.Record], int] | None:
            if not await repo.signal_exists(c, signal_id):
                return None
            return await repo.list_events(c, repo.EventFilter(signal_id=signal_id), limit, offset)

        found = await self.db.run(run)
        if found is None:
            raise NotFound(f"Signal {signal_id} not found")
        return [event_json(r) for r in found[0]], found[1]

    async def performance(self, since: datetime | None, until: datetime | None, signal_type: str | None,
                          channel: str | None = None) -> list[dict[str, Any]]:
        await self._refresh_aggregate()
        rows = await self.db.run(lambda c: repo.channel_performance(c, self.rules, since, until, signal_type, channel))
        return [performance_json(r) for r in rows]

    async def _refresh_aggregate(self) -> None:
        if self._timescaledb is None:
            self._timescaledb = await self.db.run(repo.timescaledb_enabled)
        if self._timescaledb:
            try:
                await self.db.run(repo.refresh_event_days)
            except asyncpg.PostgresError as exc:  # the real-time aggregate still answers, perhaps minutes behind
                log.warning("Could not refresh the performance aggregate", error=str(exc))

    async def refresh_performance_metrics(self) -> None:
        self.metrics.channel_performance.update(await self.performance(None, None, None))

    async def channels(self) -> list[dict[str, Any]]:
        rows = await self.db.run(repo.list_channels)
        return [{"channel": r["channel_id"], "channel_title": r["channel_title"], "signal_count": r["signal_count"],
                 "last_signal": iso_ms_or_none(r["last_signal"])} for r in rows]

    async def bots(self) -> list[dict[str, Any]]:
        figures = {r["source"]: r for r in await self.db.run(repo.source_figures)}
        return [{"source": source, "messages": int(figures[source]["messages"]) if source in figures else 0,
                 "last_message_at": iso_ms_or_none(figures[source]["last_message_at"]) if source in figures else None}
                for source in SOURCES]

    async def forwarded(self, limit: int, channel: str | None, since: datetime | None,
                        until: datetime | None) -> list[dict[str, Any]]:
        rows = await self.db.run(lambda c: repo.forwarded_messages(c, limit, channel, since, until))
        # `ts`, `source_channel_*` and `forwarded_at` are the old API's names, kept for dashboards that read them.
        return [{"id": r["id"], "channel_id": r["channel_id"], "message_id": r["message_id"],
                 "message_text": r["text"], "original_timestamp": iso_ms_or_none(r["message_date"]),
                 "photos": r["photos"], "received_at": iso_ms_or_none(r["received_at"]), "kind": r["kind"],
                 "edit_date": iso_ms_or_none(r["edit_date"]),
                 "ts": int(r["message_date"].timestamp() * 1000), "source_channel_id": r["channel_id"],
                 "source_channel_name": r["chat_title"], "forwarded_at": iso_ms_or_none(r["received_at"])}
                for r in rows]

    # The channel registry

    async def registry_list(self, status: str | None, channel_type: str | None) -> list[dict[str, Any]]:
        return [channel_json(r) for r in await self.db.run(lambda c: repo.registry_list(c, status, channel_type))]

    async def registry_get(self, channel_pk: str) -> dict[str, Any]:
        row = await self.db.run(lambda c: repo.registry_get(c, channel_pk))
        if row is None:
            raise NotFound(f"Channel {channel_pk} not found")
        return channel_json(row)

    async def registry_create(self, values: dict[str, Any]) -> dict[str, Any]:
        row = await self.db.run(lambda c: repo.registry_insert(c, values))
        if row is None:
            raise Conflict("Channel already registered with this type")
        return channel_json(row)

    async def registry_update(self, channel_pk: str, changes: dict[str, Any]) -> dict[str, Any]:
        if not changes:
            raise ValidationFailed(["body must contain at least one field to update"])
        try:
            row = await self.db.run(lambda c: repo.registry_update(c, channel_pk, changes))
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("Channel already registered with this type") from exc
        if row is None:
            raise NotFound(f"Channel {channel_pk} not found")
        return channel_json(row)

    async def registry_delete(self, channel_pk: str) -> None:
        if not await self.db.run(lambda c: repo.registry_delete(c, channel_pk)):
            raise NotFound(f"Channel {channel_pk} not found")

    async def registry_labels(self) -> dict[str, str]:
        return {r["channel_id"]: r["label"] for r in await self.db.run(repo.registry_labels)}

    async def gateway_channels(self) -> list[dict[str, Any]]:
        return await self.registry_list("active", "source")


async def reparse_all(db: Database, progress: Callable[[int, int], None] | None = None,
                      page_size: int = 2000) -> dict[str, int]:
    """Re-run the parser over every stored message and re-derive signals and events (idempotent)."""
    total = await db.run(repo.count_messages)
    done = 0
    last_id = 0
    kinds = {"signal": 0, "update": 0, "noise": 0}
    while True:
        rows = await db.run(partial(repo.messages_page, after_id=last_id, size=page_size))
        if not rows:
            break
        parses = []
        for r in rows:
            if r["kind"] == "delete":
                parsed: dict[str, Any] = {"kind": "noise", "reason": "deleted"}
            else:
                parsed = parse_text(r["text"])
            kinds[parsed["kind"]] += 1
            parses.append(parsed)
        ids, dates = [r["id"] for r in rows], [r["message_date"] for r in rows]
        await db.run(partial(repo.store_parses, ids=ids, dates=dates, parsed=parses), transaction=True)
        last_id = rows[-1]["id"]
        done += len(rows)
        if progress is not None:
            progress(done, total)
    signals = await db.run(repo.rebuild_derived, transaction=True)
    return {"messages": done, "signals": signals, **kinds}
