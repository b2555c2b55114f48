"""Versioned SQL migrations per schema, applied under an advisory lock so that replicas never collide."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# One lock for every schema: migrations are short and rare, and one key keeps it simple to reason about.
MIGRATION_LOCK_KEY = 72_400_501


@dataclass(frozen=True)
class Migration:
    schema: str
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(schema: str) -> list[Migration]:
    """The migration files of one schema (`NNNN_name.sql`), in version order."""
    folder = resources.files("tradingsystem.migrations").joinpath(schema)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        version, _, rest = entry.name.partition("_")
        found.append(Migration(schema, version, rest.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def timescaledb_enabled(conn: asyncpg.Connection) -> bool:
    """Install TimescaleDB if the server offers it; True when the extension is active in this database."""
    installed = await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if installed:
        return True
    available = await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if not available:
        return False
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:
        log.warning("TimescaleDB is available but could not be enabled", error=str(exc))
        return False
    return True


async def migrate(conn: asyncpg.Connection, schemas: list[str]) -> list[str]:
    """Apply the pending migrations of `schemas`; returns `schema/version` of each one applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        timescale = await timescaledb_enabled(conn)
        for schema in schemas:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["version"]: r["checksum"]
                for r in await conn.fetch(f'SELECT version, checksum FROM "{schema}".schema_migrations')
            }
            for migration in load_migrations(schema):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        log.warning("An applied migration file has changed since it ran",
                                    schema=schema, version=migration.version)
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
                        migration.version, migration.name, migration.checksum,
                    )
                applied.append(f"{schema}/{migration.version}")
                log.info("Migration applied", schema=schema, version=migration.version, name=migration.name,
                         timescaledb=timescale)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied
