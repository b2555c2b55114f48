"""`tradingsystem signals report`: each channel's signal performance as a table on the terminal."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from tradingsystem.core.db import Database
from tradingsystem.core.errors import ValidationFailed
from tradingsystem.core.logging import configure_logging
from tradingsystem.core.migrations import migrate
from tradingsystem.tpcapital.metrics import TpCapitalMetrics
from tradingsystem.tpcapital.reparse import run_database_command
from tradingsystem.tpcapital.service import TokenChecker, TpCapitalService
from tradingsystem.tpcapital.settings import LifecycleSettings


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _gain(value: Any) -> str:
    return "—" if value is None else f"{float(value):+.2f}%"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m"


def performance_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for name, justify in (("Channel", "left"), ("Signals", "right"), ("Closed", "right"), ("Target 1", "right"),
                          ("Final target", "right"), ("Stopped", "right"), ("Mean gain", "right"),
                          ("Median gain", "right"), ("To 1st target", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            f"{r['channel_title'] or ''}\n{r['channel']}" if r["channel_title"] else r["channel"],
            str(r["signals"]), str(r["closed"]), _pct(r["target_1_hit_rate"]), _pct(r["final_target_hit_rate"]),
            _pct(r["stop_rate"]), _gain(r["mean_gain_pct"]), _gain(r["median_gain_pct"]),
            _duration(r["mean_seconds_to_first_target"]),
        )
    return table


async def _figures(dsn: str, channel: str | None, since: datetime | None, until: datetime | None,
                   signal_type: str | None) -> list[dict[str, Any]]:
    db = Database(dsn, min_size=1, max_size=2)
    await db.connect(attempts=1, base_delay_s=0.5)
    try:
        await db.run(lambda c: migrate(c, ["tp_capital"]))
        service = TpCapitalService(db, TpCapitalMetrics(), TokenChecker(""), LifecycleSettings().rules())
        return await service.performance(since, until, signal_type, channel)
    finally:
        await db.close()


def report_command(channel: str | None, since: str | None, until: str | None, signal_type: str | None,
                   dsn: str | None = None) -> int:
    """Print the channel performance figures; exit 1 with one clear line when that is not possible."""
    from tradingsystem.tpcapital.routes import parse_when, signal_type_of

    configure_logging("tp-capital-report", "WARNING")
    # Piped into a file or another program, a row stays on one line instead of wrapping at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    errors = Console(stderr=True)
    try:
        start, end = parse_when(since, "--from"), parse_when(until, "--to", end=True)
        kind = signal_type_of(signal_type)
    except ValidationFailed as exc:
        errors.print(f"[red]error:[/red] {'; '.join(exc.details or [exc.message])}")
        return 2
    rows = run_database_command(errors, dsn, lambda url: _figures(url, channel, start, end, kind))
    if rows is None:
        return 1
    window = f"{since or 'the first signal'} to {until or 'now'}"
    title = f"Channel performance, {window}" + (f", {kind}" if kind else "")
    if not rows:
        console.print(f"{title}: no signals.")
        return 0
    console.print(performance_table(rows, title))
    return 0
