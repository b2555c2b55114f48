"""`tradingsystem gateway …` commands: the failure queue (status, replay) and room for login/import/install-service."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported inside the commands so that `--help` stays fast
    from rich.console import Console

    from tradingsystem.gateway.failure_queue import FailureQueue, ReplayOutcome, ReplayReport
    from tradingsystem.gateway.settings import GatewaySettings
    from tradingsystem.gateway.types import IngestPayload

gateway_app = typer.Typer(help="Telegram Gateway: failure queue, login, import.", no_args_is_help=True)
queue_app = typer.Typer(help="The failure queue of messages the API did not take.", no_args_is_help=True)
gateway_app.add_typer(queue_app, name="queue")



def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    return Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)


def _settings() -> GatewaySettings:
    from tradingsystem.gateway.settings import GatewaySettings

    return GatewaySettings()


def _queue(settings: GatewaySettings) -> FailureQueue:
    from tradingsystem.gateway.failure_queue import FailureQueue

    return FailureQueue(settings.queue_path, settings.failure_queue_max_bytes, settings.failure_queue_warn_bytes)


# -- queue ---------------------------------------------------------------------------------------------


@queue_app.command("status")
def queue_status(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Lines, bytes and the oldest `failedAt` of the failure queue."""
    from rich.table import Table

    console, _ = _consoles()
    settings = _settings()
    queue = _queue(settings)
    status = queue.status()
    if as_json:
        typer.echo(json.dumps({
            "path": str(queue.path),
            "lines": status.lines,
            "bytes": status.bytes,
            "oldestFailedAt": status.oldest_failed_at,
            "corruptLines": queue.corrupt_lines(),
            "warnBytes": queue.warn_bytes,
            "maxBytes": queue.max_bytes,
        }))
        return
    table = Table(title="Failure queue", show_header=False)
    table.add_row("path", str(queue.path))
    table.add_row("lines", str(status.lines))
    table.add_row("bytes", f"{status.bytes} (warning at {queue.warn_bytes}, cap {queue.max_bytes})")
    table.add_row("oldest failedAt", status.oldest_failed_at or "-")
    if corrupt := queue.corrupt_lines():
        table.add_row("set aside", f"{corrupt} unreadable lines in {', '.join(map(str, queue.corrupt_files()))}")
    console.print(table)


@queue_app.command("replay")
def queue_replay() -> None:
    """Send every queued message to the API again; only the delivered lines are removed."""
    console, err_console = _consoles()
    settings = _settings()
    if not settings.tokens:
        err_console.print("FATAL: GATEWAY_SECRET_TOKEN is required")
        raise typer.Exit(1)
    queue = _queue(settings)
    total = queue.status().lines
    if total == 0:
        console.print(f"Failure queue is empty ({queue.path}).")
        return
    try:
        report = asyncio.run(_replay(settings, queue, total, console))
    except OSError as exc:
        err_console.print(f"FATAL: the failure queue {queue.path} cannot be rewritten: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"delivered: {report.delivered}  remaining: {report.remaining}")
    corrupt = queue.corrupt_lines()
    if corrupt:
        err_console.print(f"{corrupt} unreadable lines (torn or not JSON) are set aside in "
                          + ", ".join(str(f) for f in queue.corrupt_files())
                          + "; inspect them, then remove the files.")
    if "another replay is already running" in report.errors:
        err_console.print("Another replay (the running gateway or another command) holds the queue; try again.")
        raise typer.Exit(1)
    if report.unreachable:
        reason = report.errors[-1] if report.errors else "no answer"
        err_console.print(
            f"The API at {settings.api_endpoint} is not taking messages ({reason}). Nothing was lost: the "
            "remaining lines stay in the queue. Check that the TP Capital API is running "
            "(`tradingsystem status`) and that API_ENDPOINT and GATEWAY_SECRET_TOKEN are right, then run "
            "`tradingsystem gateway queue replay` again."
        )
        raise typer.Exit(1)
    if report.failed:
        err_console.print(f"{report.failed} lines were refused by the API and stay in the queue: "
                          + "; ".join(report.errors[:3]))


async def _replay(settings: GatewaySettings, queue: FailureQueue, total: int, console: Console) -> ReplayReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tradingsystem.gateway.publisher import IngestClient, replay_batch

    client = IngestClient(settings.api_endpoint, settings.tokens[0], settings.api_timeout_ms)

    async def send(payloads: list[IngestPayload]) -> list[ReplayOutcome]:
        return await replay_batch(client, payloads)

    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("replay", total=total)
            return await queue.replay(
                send,
                include_permanent=True,
                progress=lambda done, _total: progress.update(task, completed=done),
            )
    finally:
        await client.aclose()


# -- login, import, install-service --------------------------------------------------------------------
# These commands belong to the session store, the export reader and the systemd unit; they are
# registered on `gateway_app` next to this section.


@gateway_app.command("login")
def login(
    force: bool = typer.Option(False, "--force", help="Log in again even if the current session is valid."),
) -> None:
    """Log the user account in: phone, code and 2FA password (no echo). A running gateway adopts the session."""
    from tradingsystem.gateway.login import run_login

    raise typer.Exit(run_login(_settings(), force=force))


@gateway_app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(help="A Telegram Desktop export (result.json) of one channel.",
                                         exists=True, dir_okay=False, readable=True)],
) -> None:
    """Backfill a channel from a Telegram Desktop export at full speed, through the journal and /ingest/batch.

    Prints how many messages were delivered, duplicate (already stored), skipped (service messages, empty
    messages) and failed (kept in the failure queue for `tradingsystem gateway queue replay`).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tradingsystem.core.logging import configure_logging
    from tradingsystem.gateway.export import ExportError
    from tradingsystem.gateway.importer import import_export
    from tradingsystem.gateway.journal import JournalError

    console, err_console = _consoles()
    settings = _settings()
    configure_logging("telegram-gateway-import", "WARNING")
    if not settings.tokens:
        err_console.print("FATAL: GATEWAY_SECRET_TOKEN is required")
        raise typer.Exit(1)
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console, transient=False) as progress:
            task = progress.add_task("import", total=None)
            summary = asyncio.run(import_export(settings, path, lambda n: progress.advance(task, n)))
    except ExportError as exc:
        err_console.print(f"error: {exc}")
        raise typer.Exit(1) from exc
    except (sqlite3.Error, OSError, JournalError) as exc:
        err_console.print(f"FATAL: GATEWAY_DATA_DIR {settings.gateway_data_dir} is not usable: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"delivered: {summary.delivered}  duplicate: {summary.duplicate}  "
                  f"skipped: {summary.skipped}  failed: {summary.failed}")
    if summary.failed:
        err_console.print(f"{summary.failed} messages were not delivered; they wait in the failure queue "
                          f"({settings.queue_path}). Run `tradingsystem gateway queue replay` once the API answers.")
        raise typer.Exit(1)


def _register_install_service() -> None:
    from tradingsystem.gateway.systemd_unit import install_service_command

    gateway_app.command("install-service", help="Install the hardened systemd unit tp-capital-gateway "
                        "(--dry-run prints it).")(install_service_command)


_register_install_service()
