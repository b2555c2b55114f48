"""Small SQL helpers shared by the repositories: literal LIKE patterns, pages with their total."""

from __future__ import annotations

from typing import Any

import asyncpg


def like_pattern(term: str) -> str:
    """A `LIKE`/`ILIKE` pattern that finds `term` anywhere, its own `%`, `_` and `\\` matched literally."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def fetch_page(conn: asyncpg.Connection, columns: str, source: str, order_by: str, args: list[Any],
                     limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
    """One page of `SELECT columns FROM source ORDER BY order_by` and the total number of matching rows.

    The total rides along with the page (`count(*) OVER ()`), so a page costs one round trip; only a page past
    the end needs a second query to learn the total.
    """
    n = len(args)
    rows = await conn.fetch(
        f"SELECT {columns}, count(*) OVER () AS total FROM {source} ORDER BY {order_by} "
        f"LIMIT ${n + 1} OFFSET ${n + 2}",
        *args, limit, offset,
    )
    if rows:
        return rows, int(rows[0]["total"])
    if offset == 0:
        return [], 0
    return [], int(await conn.fetchval(f"SELECT count(*) FROM {source}", *args))
