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


# A GUC the TimescaleDB loader defines when the server preloads it. Unlike shared_preload_libraries (readable by
# privileged roles only), every role sees it in pg_settings, which hides placeholders for unloaded libraries.
LOADER_SETTING = "timescaledb.max_background_workers"


async def timescaledb_preloaded(conn: asyncpg.Connection) -> bool:
    """True when the server preloads the TimescaleDB loader (shared_preload_libraries)."""
    return bool(await conn.fetchval("SELECT 1 FROM pg_settings WHERE name = $1", LOADER_SETTING))


async def timescaledb_in_use(conn: asyncpg.Connection) -> bool:
    """True when this database has the extension and the server preloads it, so its functions can be called."""
    if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"):
        return False
    return await timescaledb_preloaded(conn)


async def timescaledb_enabled(conn: asyncpg.Connection) -> bool:
    """Install TimescaleDB if the server offers it; True when the extension is active in this database.

    Without the preloaded loader, `CREATE EXTENSION timescaledb` ends the session with a FATAL error, so the
    preload is checked first and the service then goes on with plain PostgreSQL on a connection that still works.
    """
    installed = await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    available = installed or await conn.fetchval(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if not available:
        return False
    if not await timescaledb_preloaded(conn):
        log.warning("TimescaleDB is installed on the server but not preloaded; continuing on plain PostgreSQL "
                    "(no hypertables). To use it, add timescaledb to shared_preload_libraries and restart the server",
                    extension_in_database=bool(installed))
        return False
    if installed:
        return True
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:
        log.warning("TimescaleDB is available but could not be enabled; continuing on plain PostgreSQL",
                    error=str(exc))
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
