"""`tradingsystem signals reparse`: re-run the parser over every stored raw message, with a progress bar."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tradingsystem.core.db import Database, DatabaseStartupFailed
from tradingsystem.core.logging import configure_logging
from tradingsystem.core.migrations import migrate
from tradingsystem.tpcapital.service import reparse_all

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def _reparse(dsn: str, console: Console) -> dict[str, int]:
    db = Database(dsn, min_size=1, max_size=2)
    await db.connect(attempts=1, base_delay_s=0.5)
    try:
        await db.run(lambda c: migrate(c, ["tp_capital"]))
        with Progress(TextColumn("Re-parsing messages"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("reparse", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await reparse_all(db, advance)
    finally:
        await db.close()


def run_database_command(errors: Console, dsn: str | None, work: Callable[[str], Awaitable[T]]) -> T | None:
    """Run an operator command's database work on `dsn` (default: the configured or embedded database).

    None after printing one clear error line instead of a traceback.
    """
    try:
        if dsn is None:
            from tradingsystem.core.dbcli import resolve_dsn

            dsn = resolve_dsn(start_embedded=True)
        return asyncio.run(work(dsn))  # type: ignore[arg-type]
    except DatabaseStartupFailed:
        errors.print("[red]error:[/red] cannot connect to the database")
    except Exception as exc:  # an operator command: a clear line instead of a traceback
        errors.print(f"[red]error:[/red] {exc}")
    return None


def reparse_command(dsn: str | None = None) -> int:
    """Re-parse history so that a better parser fixes old signals; safe to run again (idempotent)."""
    configure_logging("tp-capital-reparse", "WARNING")
    console = Console(stderr=True)
    result = run_database_command(console, dsn, lambda url: _reparse(url, console))
    if result is None:
        return 1
    print(f"Re-parsed {result['messages']} messages: {result['signal']} signals, {result['update']} updates, "
          f"{result['noise']} noise; {result['signals']} signal rows refreshed")
    return 0
