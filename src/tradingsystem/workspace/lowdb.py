"""Imports a legacy LowDB `library.json` into PostgreSQL: one transaction, nothing dropped, verified, renamed."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from tradingsystem.core.logging import configure_logging
from tradingsystem.core.migrations import migrate
from tradingsystem.workspace import repository as repo
from tradingsystem.workspace.models import PRIORITIES, STATUSES

log = structlog.get_logger(__name__)

STATUS_MAP = {"pending": "new", "todo": "new", "open": "new", "in_progress": "in-progress",
              "inprogress": "in-progress", "doing": "in-progress", "in_review": "review", "done": "completed",
              "complete": "completed", "closed": "completed", "cancelled": "rejected", "canceled": "rejected"}
PRIORITY_MAP = {"urgent": "critical", "highest": "critical", "normal": "medium", "lowest": "low"}
KNOWN_FIELDS = {"id", "title", "description", "category", "priority", "status", "tags", "metadata",
                "createdAt", "created_at", "updatedAt", "updated_at"}


class LowDBError(Exception):
    """The file cannot be migrated as it is; the message says why."""


@dataclass
class Report:
    items: int = 0
    inserted: int = 0
    already_present: int = 0
    categories_created: list[str] = field(default_factory=list)
    mapped: dict[str, int] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.mapped[what] = self.mapped.get(what, 0) + 1


def slugify(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:50] or "sem-categoria"


def _time(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    if isinstance(value, str) and value.strip():
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def normalise_item(raw: Any, index: int, report: Report) -> dict[str, Any]:
    """One LowDB item as a row; values the schema cannot hold are mapped and the originals kept in metadata."""
    if not isinstance(raw, dict) or raw.get("id") in (None, ""):
        raise LowDBError(f"item #{index} has no id")
    metadata: dict[str, Any] = dict(raw["metadata"]) if isinstance(raw.get("metadata"), dict) else {}
    extras = {k: v for k, v in raw.items() if k not in KNOWN_FIELDS}
    if extras:
        metadata.setdefault("legacy_fields", {}).update(extras)

    status = str(raw.get("status") or "new").strip()
    if status not in STATUSES:
        mapped = STATUS_MAP.get(status.lower().replace("-", "_"), STATUS_MAP.get(status.lower(), "new"))
        report.note(f"status {status} -> {mapped}")
        metadata["legacy_status"] = status
        status = mapped
    priority = str(raw.get("priority") or "medium").strip().lower()
    if priority not in PRIORITIES:
        mapped = PRIORITY_MAP.get(priority, "medium")
        report.note(f"priority {raw.get('priority')} -> {mapped}")
        metadata["legacy_priority"] = raw.get("priority")
        priority = mapped

    title = str(raw.get("title") or "").strip()
    if not title:
        title = "(sem título)"
        report.note("empty title -> (sem título)")
    if len(title) > 200:
        metadata["full_title"] = title
        title = title[:200]
        report.note("title over 200 characters kept in metadata.full_title")
    description = str(raw.get("description") or "")
    if len(description) > 2000:
        metadata["full_description"] = description
        description = description[:2000]
        report.note("description over 2000 characters kept in metadata.full_description")
    raw_tags = raw.get("tags") or []
    tags = [str(t) for t in (raw_tags if isinstance(raw_tags, list) else [raw_tags])]
    category_raw = str(raw.get("category") or "sem-categoria")
    category = slugify(category_raw)
    if category != category_raw:
        report.note(f"category {category_raw} -> {category}")
    return {
        "id": str(raw["id"]),
        "title": title,
        "description": description,
        "category": category,
        "priority": priority,
        "status": status,
        "tags": tags,
        "metadata": metadata,
        "created_at": _time(raw.get("createdAt", raw.get("created_at"))),
        "updated_at": _time(raw.get("updatedAt", raw.get("updated_at", raw.get("createdAt", raw.get("created_at"))))),
    }


def read_library(path: Path, report: Report) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LowDBError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise LowDBError(f'{path} is not a LowDB library: expected {{"items": [...]}}')
    items = [normalise_item(raw, i, report) for i, raw in enumerate(data["items"])]
    categories = {item["category"] for item in items}
    for cat in data.get("categories") or []:
        name = cat.get("name") if isinstance(cat, dict) else cat
        if name:
            categories.add(slugify(str(name)))
    report.items = len(items)
    return items, sorted(categories)


async def migrate_items(dsn: str, items: list[dict[str, Any]], categories: list[str], report: Report) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await migrate(conn, ["workspace"])
        for typename in ("json", "jsonb"):
            await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        async with conn.transaction():
            report.categories_created = await repo.ensure_categories(conn, categories)
            inserted = await repo.insert_items_bulk(conn, items) if items else []
        report.inserted = len(inserted)
        report.already_present = len(items) - len(inserted)
        # Verification after commit: every id of the file must be readable from the database.
        ids = [item["id"] for item in items]
        found = await repo.existing_item_ids(conn, ids) if ids else set()
        missing = [i for i in ids if i not in found]
        if missing:
            raise LowDBError(f"verification failed: {len(missing)} item(s) not found, e.g. {missing[:5]}")
    finally:
        await conn.close()


def migrated_name(path: Path) -> Path:
    target = path.with_name(f"{path.name}.migrated-{datetime.now(UTC):%Y%m%d}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.migrated-{datetime.now(UTC):%Y%m%d}-{n}")
    return target


def migrate_lowdb_command(path_arg: str, dsn: str | None = None) -> int:
    """`tradingsystem workspace migrate-lowdb [PATH]`; returns the exit code."""
    configure_logging("workspace-migration")
    path = Path(path_arg)
    if not path.exists():
        log.info("No LowDB file found, skipping migration", path=str(path))
        return 0
    report = Report()
    try:
        items, categories = read_library(path, report)
        if dsn is None:
            from tradingsystem.core.dbcli import resolve_dsn

            dsn = resolve_dsn(start_embedded=True)
        asyncio.run(migrate_items(dsn, items, categories, report))
    except (LowDBError, OSError, asyncpg.PostgresError, ValueError) as exc:
        log.error("Migration failed, nothing changed", path=str(path), error=str(exc))
        return 1
    for what, count in sorted(report.mapped.items()):
        log.info("Legacy value mapped", mapping=what, items=count)
    if report.categories_created:
        log.info("Categories created", categories=report.categories_created)
    target = migrated_name(path)
    path.rename(target)
    log.info(f"Migration completed: {report.items} items", inserted=report.inserted,
             already_present=report.already_present, renamed_to=str(target))
    return 0
