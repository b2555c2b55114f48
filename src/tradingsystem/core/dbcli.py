"""`tradingsystem db …`: which database the services use, and applying migrations to it."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import structlog

from tradingsystem.core.embedded import DEFAULT_PORT, EmbeddedPostgres
from tradingsystem.core.migrations import migrate
from tradingsystem.core.settings import DatabaseSettings

log = structlog.get_logger(__name__)
SCHEMAS = ["workspace", "tp_capital"]


def var_dir() -> Path:
    """Runtime state of the local launcher (`TRADINGSYSTEM_VAR_DIR`, default `./var`)."""
    return Path(os.environ.get("TRADINGSYSTEM_VAR_DIR", "var"))


def embedded() -> EmbeddedPostgres:
    port = int(os.environ.get("EMBEDDED_PG_PORT", str(DEFAULT_PORT)))
    return EmbeddedPostgres(var_dir() / "postgres", port=port)


def resolve_dsn(start_embedded: bool = False) -> str:
    """The configured database, or the embedded one (started first when asked to)."""
    settings = DatabaseSettings()
    if settings.configured:
        return settings.dsn()
    pg = embedded()
    if start_embedded:
        pg.start()
    return pg.url


async def migrate_command() -> int:
    try:
        dsn = resolve_dsn(start_embedded=True)
    except Exception as exc:  # an operator-facing command: say what went wrong, no traceback
        print(f"error: {exc}")
        return 1
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: cannot connect to the database: {exc}")
        return 1
    try:
        applied = await migrate(conn, SCHEMAS)
    finally:
        await conn.close()
    print(f"Applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "; up to date"))
    return 0


def url_command() -> int:
    try:
        print(resolve_dsn())
    except Exception as exc:
        print(f"error: {exc}")
        return 1
    return 0
