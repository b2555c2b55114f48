"""All of the Workspace's SQL: items and categories in the `workspace` schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from tradingsystem.core.sql import like_pattern

ITEM_COLUMNS = "id, title, description, category, priority, status, tags, metadata, created_at, updated_at"
# An item as the API's JSON, built by PostgreSQL: a page of 100 items leaves the database as one text value
# instead of 1,100 values to decode and re-encode in Python. Times as ISO 8601 UTC with milliseconds, each
# formatted once (`c` and `u` from the inner query) though the contract spells each twice.
_ISO = """to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
ITEM_JSON = (
    "json_build_object('id', id, 'title', title, 'description', description, 'category', category, "
    "'priority', priority, 'status', status, 'tags', to_json(tags), 'metadata', metadata, "
    "'createdAt', c, 'updatedAt', u, 'created_at', c, 'updated_at', u)"
)
CATEGORY_COLUMNS = "name, display_name, description, color, display_order, is_active, created_at, updated_at"


@dataclass(frozen=True)
class ItemFilter:
    category: str | None = None
    status: str | None = None
    priority: str | None = None
    tag: str | None = None
    search: str | None = None


def _where(f: ItemFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("category", f.category), ("status", f.status), ("priority", f.priority)):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if f.tag is not None:
        args.append(f.tag)
        clauses.append(f"${len(args)} = ANY(tags)")
    if f.search:
        args.append(like_pattern(f.search))
        n = len(args)
        clauses.append(f"(title ILIKE ${n} OR description ILIKE ${n} OR array_to_string(tags, ' ') ILIKE ${n})")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def list_items_json(conn: asyncpg.Connection, f: ItemFilter, limit: int, offset: int) -> tuple[str, int]:
    """One page of items, newest first, as a JSON array text, and the total number of matches."""
    where, args = _where(f)
    n = len(args)
    # The page is read through the (created_at, id) index and stops after `limit` rows, so only its rows are
    # formatted; the total is a count of its own (a window count over the page query made every matching row
    # go through the formatting and a sort). One statement, one round trip.
    row = await conn.fetchrow(
        f"SELECT coalesce((SELECT json_agg({ITEM_JSON} ORDER BY created_at DESC, id DESC) FROM "
        f"(SELECT {ITEM_COLUMNS}, {_ISO.format(col='created_at')} AS c, {_ISO.format(col='updated_at')} AS u "
        f"FROM (SELECT {ITEM_COLUMNS} FROM workspace.items{where} ORDER BY created_at DESC, id DESC "
        f"LIMIT ${n + 1} OFFSET ${n + 2}) AS p) AS page), '[]')::text AS data, "
        f"(SELECT count(*) FROM workspace.items{where}) AS total",
        *args, limit, offset,
    )
    return row["data"], int(row["total"])


async def get_item(conn: asyncpg.Connection, item_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ITEM_COLUMNS} FROM workspace.items WHERE id = $1", item_id)


async def insert_item_in_active_category(conn: asyncpg.Connection, values: dict[str, Any]
                                         ) -> tuple[asyncpg.Record | None, list[str] | None]:
    """Insert when the item's category is active, in one statement and so one round trip (no transaction to
    open and commit). Returns (row, None) when stored, (None, None) when the id exists, and (None, the active
    category names) when the category is not one of them."""
    row = await conn.fetchrow(
        "WITH active AS (SELECT coalesce(array_agg(name ORDER BY display_order, name), '{}') AS names "
        "                  FROM workspace.categories WHERE is_active), "
        "stored AS (INSERT INTO workspace.items (id, title, description, category, priority, status, tags, metadata) "
        "           SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text[], $8::jsonb "
        "             FROM active WHERE $4::text = ANY (active.names) "
        f"          ON CONFLICT (id) DO NOTHING RETURNING {ITEM_COLUMNS}) "
        "SELECT $4::text = ANY (a.names) AS category_active, a.names AS active_categories, s.* "
        "  FROM active a LEFT JOIN stored s ON true",
        values["id"], values["title"], values["description"], values["category"], values["priority"],
        values["status"], values["tags"], values["metadata"],
    )
    assert row is not None  # the CTE `active` always yields one row
    if not row["category_active"]:
        return None, list(row["active_categories"])
    return (row if row["id"] is not None else None), None


async def update_item(conn: asyncpg.Connection, item_id: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    sets = [f"{column} = ${i + 2}" for i, column in enumerate(changes)]
    sets.append("updated_at = now()")
    return await conn.fetchrow(
        f"UPDATE workspace.items SET {', '.join(sets)} WHERE id = $1 RETURNING {ITEM_COLUMNS}",
        item_id, *changes.values(),
    )


async def delete_item(conn: asyncpg.Connection, item_id: str) -> bool:
    return await conn.fetchval("DELETE FROM workspace.items WHERE id = $1 RETURNING true", item_id) is not None


async def count_items(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM workspace.items"))


async def item_stats(conn: asyncpg.Connection) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT 'category' AS dim, category AS key, count(*) AS n FROM workspace.items GROUP BY category "
        "UNION ALL SELECT 'status', status, count(*) FROM workspace.items GROUP BY status "
        "UNION ALL SELECT 'priority', priority, count(*) FROM workspace.items GROUP BY priority"
    )
    stats: dict[str, Any] = {"byCategory": {}, "byStatus": {}, "byPriority": {}}
    names = {"category": "byCategory", "status": "byStatus", "priority": "byPriority"}
    for row in rows:
        stats[names[row["dim"]]][row["key"]] = int(row["n"])
    stats["total"] = sum(stats["byStatus"].values())
    return stats


async def insert_items_bulk(conn: asyncpg.Connection, items: list[dict[str, Any]]) -> list[str]:
    """Insert many items keeping their own ids and timestamps; returns the ids actually inserted."""
    # Tags travel as JSON text because unnest() cannot take ragged text[][]; they are stored as text[].
    rows = await conn.fetch(
        "INSERT INTO workspace.items (id, title, description, category, priority, status, tags, metadata, "
        "created_at, updated_at) "
        "SELECT u.id, u.title, u.description, u.category, u.priority, u.status, "
        "ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.metadata, u.created_at, u.updated_at "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
        "$7::text[], $8::jsonb[], $9::timestamptz[], $10::timestamptz[]) "
        "AS u(id, title, description, category, priority, status, tags, metadata, created_at, updated_at) "
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        [i["id"] for i in items], [i["title"] for i in items], [i["description"] for i in items],
        [i["category"] for i in items], [i["priority"] for i in items], [i["status"] for i in items],
        [json.dumps(i["tags"]) for i in items], [i["metadata"] for i in items],
        [i["created_at"] for i in items], [i["updated_at"] for i in items],
    )
    return [r["id"] for r in rows]


async def existing_item_ids(conn: asyncpg.Connection, ids: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT id FROM workspace.items WHERE id = ANY($1::text[])", ids)
    return {r["id"] for r in rows}


async def list_categories(conn: asyncpg.Connection, include_inactive: bool = False) -> list[asyncpg.Record]:
    where = "" if include_inactive else " WHERE is_active"
    return await conn.fetch(
        f"SELECT {CATEGORY_COLUMNS} FROM workspace.categories{where} ORDER BY display_order, name"
    )


async def active_category_names(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT name FROM workspace.categories WHERE is_active ORDER BY display_order, name")
    return [r["name"] for r in rows]


async def get_category(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CATEGORY_COLUMNS} FROM workspace.categories WHERE name = $1", name)


async def insert_category(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"INSERT INTO workspace.categories (name, display_name, description, color, display_order, is_active) "
        f"VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING {CATEGORY_COLUMNS}",
        values["name"], values["display_name"], values["description"], values["color"],
        values["display_order"], values["is_active"],
    )


async def ensure_categories(conn: asyncpg.Connection, names: list[str]) -> list[str]:
    """Create the named categories that do not exist yet; returns the ones created."""
    rows = await conn.fetch(
        "INSERT INTO workspace.categories (name, display_name, description, display_order) "
        "SELECT n, initcap(replace(n, '-', ' ')), 'Created by the LowDB migration', 1000 FROM unnest($1::text[]) AS n "
        "ON CONFLICT (name) DO NOTHING RETURNING name",
        names,
    )
    return [r["name"] for r in rows]


async def update_category(conn: asyncpg.Connection, name: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    sets = [f"{column} = ${i + 2}" for i, column in enumerate(changes)]
    sets.append("updated_at = now()")
    return await conn.fetchrow(
        f"UPDATE workspace.categories SET {', '.join(sets)} WHERE name = $1 RETURNING {CATEGORY_COLUMNS}",
        name, *changes.values(),
    )


async def toggle_category(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"UPDATE workspace.categories SET is_active = NOT is_active, updated_at = now() WHERE name = $1 "
        f"RETURNING {CATEGORY_COLUMNS}",
        name,
    )


async def category_usage(conn: asyncpg.Connection, name: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM workspace.items WHERE category = $1", name))


async def delete_category(conn: asyncpg.Connection, name: str) -> bool:
    return await conn.fetchval("DELETE FROM workspace.categories WHERE name = $1 RETURNING true", name) is not None
