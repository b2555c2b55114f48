"""The Workspace's rules: what makes an item or category valid, what conflicts, what each answer holds."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from tradingsystem.core.db import Database
from tradingsystem.core.errors import Conflict, NotFound, ValidationFailed
from tradingsystem.core.timeutil import iso_ms
from tradingsystem.core.validation import check_body
from tradingsystem.workspace import repository as repo
from tradingsystem.workspace.metrics import WorkspaceMetrics
from tradingsystem.workspace.models import CategoryCreate, CategoryUpdate, ItemCreate, ItemUpdate

T = TypeVar("T")
OPERATIONS = ("list_items", "get_item", "create_item", "update_item", "delete_item", "item_stats",
              "list_categories", "get_category", "create_category", "update_category", "delete_category")


def item_json(row: asyncpg.Record) -> dict[str, Any]:
    # Pages are built by PostgreSQL (`repository.ITEM_JSON`); a test holds the two shapes equal.
    created, updated = iso_ms(row["created_at"]), iso_ms(row["updated_at"])
    return {
        "id": row["id"],
        "title": row["title"],
        "description": row["description"],
        "category": row["category"],
        "priority": row["priority"],
        "status": row["status"],
        "tags": list(row["tags"]),
        "metadata": row["metadata"],
        "createdAt": created,
        "updatedAt": updated,
        "created_at": created,
        "updated_at": updated,
    }


def category_json(row: asyncpg.Record) -> dict[str, Any]:
    # Dashboards identify a category by `id`, which the old API set to its name.
    return {
        "id": row["name"],
        "name": row["name"],
        "display_name": row["display_name"],
        "description": row["description"],
        "color": row["color"],
        "display_order": row["display_order"],
        "is_active": row["is_active"],
        "created_at": iso_ms(row["created_at"]),
        "updated_at": iso_ms(row["updated_at"]),
    }


def changes_of(model: type[ItemUpdate] | type[CategoryUpdate], raw: Any) -> tuple[dict[str, Any], list[str]]:
    """The fields a partial update sets, and every problem with them; null is not a value any may take."""
    data, problems = check_body(model, raw)
    if data is None:
        # Nulls are problems too, whatever else is wrong: name them in the same answer.
        nulls = [k for k, v in raw.items() if v is None and k in model.model_fields] if isinstance(raw, dict) else []
        return {}, problems + [f"{k} must not be null" for k in nulls if f"{k} must not be null" not in problems]
    changes = data.model_dump(exclude_unset=True)
    problems = [f"{k} must not be null" for k, v in changes.items() if v is None]
    if not changes:
        problems.append("body must contain at least one field to update")
    return changes, problems


def given_category(raw: Any) -> str | None:
    """The category a body names, when it is a name at all (its other problems are the model's to report)."""
    value = raw.get("category") if isinstance(raw, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() and len(value.strip()) <= 50 else None


def _category_problem(active: list[str]) -> str:
    return f"category must be one of: {', '.join(active)}"


class WorkspaceService:
    """Items and categories on PostgreSQL, with the Workspace's metrics kept current."""

    def __init__(self, db: Database, metrics: WorkspaceMetrics) -> None:
        self.db = db
        self.metrics = metrics
        # One histogram child per operation, looked up once: every request times its query.
        self._durations = {op: metrics.query_duration.labels(op) for op in OPERATIONS}

    async def _run(self, operation: str, fn: Callable[[asyncpg.Connection], Awaitable[T]],
                   transaction: bool = False) -> T:
        started = time.perf_counter()
        try:
            return await self.db.run(fn, transaction=transaction)
        finally:
            self._durations[operation].observe(time.perf_counter() - started)

    async def refresh_item_count(self) -> None:
        self.metrics.items_total.set(await self.db.run(repo.count_items))

    async def _category_problems(self, conn: asyncpg.Connection, category: str | None) -> list[str]:
        if category is None:
            return []
        active = await repo.active_category_names(conn)
        return [] if category in active else [_category_problem(active)]

    # Items

    async def list_items_json(self, f: repo.ItemFilter, limit: int, offset: int) -> tuple[str, int]:
        """A page as JSON text built by the database, and the total number of matches."""
        return await self._run("list_items", lambda c: repo.list_items_json(c, f, limit, offset))

    async def get_item(self, item_id: str) -> dict[str, Any]:
        row = await self._run("get_item", lambda c: repo.get_item(c, item_id))
        if row is None:
            raise NotFound(f"Item {item_id} not found")
        return item_json(row)

    async def create_item(self, raw: Any) -> dict[str, Any]:
        """Create from a parsed JSON body; every problem, the category's among them, in one 400."""
        data, problems = check_body(ItemCreate, raw)
        if problems or data is None:
            async def all_problems(conn: asyncpg.Connection) -> list[str]:
                return problems + await self._category_problems(conn, given_category(raw))

            raise ValidationFailed(await self._run("create_item", all_problems))
        values = data.model_dump()
        values["id"] = values["id"] or str(uuid.uuid4())
        # The category check and the insert are one statement: a valid create costs one round trip.
        row, active = await self._run("create_item", lambda c: repo.insert_item_in_active_category(c, values))
        if active is not None:
            raise ValidationFailed([_category_problem(active)])
        if row is None:
            raise Conflict("Item with this ID already exists")
        self.metrics.created.inc()
        self.metrics.items_total.inc()
        return item_json(row)

    async def update_item(self, item_id: str, raw: Any) -> dict[str, Any]:
        changes, problems = changes_of(ItemUpdate, raw)

        async def update(conn: asyncpg.Connection) -> asyncpg.Record:
            all_problems = problems + await self._category_problems(conn, given_category(raw))
            if all_problems:
                raise ValidationFailed(all_problems)
            row = await repo.update_item(conn, item_id, changes)
            if row is None:
                raise NotFound(f"Item {item_id} not found")
            return row

        row = await self._run("update_item", update, transaction=True)
        self.metrics.updated.inc()
        return item_json(row)

    async def delete_item(self, item_id: str) -> None:
        deleted = await self._run("delete_item", lambda c: repo.delete_item(c, item_id))
        if not deleted:
            raise NotFound(f"Item {item_id} not found")
        self.metrics.deleted.inc()
        self.metrics.items_total.dec()

    async def stats(self) -> dict[str, Any]:
        stats = await self._run("item_stats", repo.item_stats)
        self.metrics.items_total.set(stats["total"])
        return stats

    # Categories

    async def list_categories(self, include_inactive: bool) -> list[dict[str, Any]]:
        rows = await self._run("list_categories", lambda c: repo.list_categories(c, include_inactive))
        return [category_json(r) for r in rows]

    async def get_category(self, name: str) -> dict[str, Any]:
        row = await self._run("get_category", lambda c: repo.get_category(c, name))
        if row is None:
            raise NotFound(f"Category {name} not found")
        return category_json(row)

    async def create_category(self, raw: Any) -> dict[str, Any]:
        data, problems = check_body(CategoryCreate, raw)
        if data is None:
            raise ValidationFailed(problems)
        values = data.model_dump()
        row = await self._run("create_category", lambda c: repo.insert_category(c, values))
        if row is None:
            raise Conflict("Category with this name already exists")
        return category_json(row)

    async def update_category(self, name: str, raw: Any) -> dict[str, Any]:
        changes, problems = changes_of(CategoryUpdate, raw)
        if problems:
            raise ValidationFailed(problems)
        row = await self._run("update_category", lambda c: repo.update_category(c, name, changes))
        if row is None:
            raise NotFound(f"Category {name} not found")
        return category_json(row)

    async def toggle_category(self, name: str) -> dict[str, Any]:
        row = await self._run("update_category", lambda c: repo.toggle_category(c, name))
        if row is None:
            raise NotFound(f"Category {name} not found")
        return category_json(row)

    async def delete_category(self, name: str) -> None:
        async def delete(conn: asyncpg.Connection) -> None:
            if await repo.get_category(conn, name) is None:
                raise NotFound(f"Category {name} not found")
            in_use = await repo.category_usage(conn, name)
            if in_use:
                raise Conflict(f"Category {name} is used by {in_use} item(s)")
            try:
                await repo.delete_category(conn, name)
            except asyncpg.ForeignKeyViolationError as exc:  # an item arrived between the check and the delete
                raise Conflict(f"Category {name} is in use") from exc

        await self._run("delete_category", delete, transaction=True)
