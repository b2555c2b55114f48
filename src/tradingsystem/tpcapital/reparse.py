"""`tradingsystem signals reparse`: re-run the parser over every stored raw message, with a progress bar."""

from __future__ import annotations

import asyncio

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tradingsystem.core.db import Database, DatabaseStartupFailed
from tradingsystem.core.logging import configure_logging
from tradingsystem.core.migrations import migrate
from tradingsystem.tpcapital.service import reparse_all

log = structlog.get_logger(__name__)


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


def reparse_command(dsn: str | None = None) -> int:
    """Re-parse history so that a better parser fixes old signals; safe to run again (idempotent)."""
    configure_logging("tp-capital-reparse", "WARNING")
    console = Console(stderr=True)
    try:
        if dsn is None:
            from tradingsystem.core.dbcli import resolve_dsn

            dsn = resolve_dsn(start_embedded=True)
        result = asyncio.run(_reparse(dsn, console))
    except DatabaseStartupFailed:
        console.print("[red]error:[/red] cannot connect to the database")
        return 1
    except Exception as exc:  # an operator command: a clear line instead of a traceback
        console.print(f"[red]error:[/red] {exc}")
        return 1
    print(f"Re-parsed {result['messages']} messages: {result['signal']} signals, {result['update']} updates, "
          f"{result['noise']} noise; {result['signals']} signal rows refreshed")
    return 0
