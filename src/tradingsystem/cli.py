"""The `tradingsystem` command: run, check and operate the gateway, the TP Capital API and the Workspace."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(
    name="tradingsystem",
    help="Telegram trading signals into PostgreSQL and out to dashboards.\n\n"
    "Start everything with `tradingsystem up`; see `tradingsystem COMMAND --help` for each command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database: apply migrations, print the embedded database's URL.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspace maintenance: migrate a legacy LowDB file.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")

from tradingsystem.launcher.cli import register as register_launcher  # noqa: E402

register_launcher(app)  # up, down, status, health, logs


def _register_components() -> None:
    # Each component owns its own sub-commands; they import only typer at module level, so --help stays fast.
    from tradingsystem.gateway.cli import gateway_app
    from tradingsystem.tpcapital.cli import signals_app

    @signals_app.command("reparse")
    def reparse() -> None:
        """Re-run the parser over every stored raw message and re-derive signals and events (idempotent)."""
        from tradingsystem.tpcapital.reparse import reparse_command

        raise typer.Exit(reparse_command())

    @signals_app.command("report")
    def report(
        channel: Annotated[str | None, typer.Option("--channel", help="Only this channel id.")] = None,
        since: Annotated[str | None, typer.Option("--from", help="Signals from this ISO date, datetime or epoch ms.")]
        = None,
        until: Annotated[str | None, typer.Option("--to", help="Signals up to this ISO date, datetime or epoch ms.")]
        = None,
        signal_type: Annotated[str | None, typer.Option("--type", help="Swing Trade, Day Trade, Scalping or "
                                                                       "Position.")] = None,
    ) -> None:
        """Print each channel's signal performance: hit rates, stops, gains, time to the first target."""
        from tradingsystem.tpcapital.report import report_command

        raise typer.Exit(report_command(channel, since, until, signal_type))

    app.add_typer(signals_app, name="signals")
    app.add_typer(gateway_app, name="gateway")


_register_components()


class ServiceName(StrEnum):
    gateway = "gateway"
    api = "api"
    workspace = "workspace"


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run in the foreground.")],
    reload: Annotated[bool, typer.Option("--reload", help="Restart on source changes (development).")] = False,
) -> None:
    """Run one service in the foreground (what containers and systemd run). Stops cleanly on SIGTERM."""
    if service is ServiceName.workspace:
        from tradingsystem.workspace.app import run as run_workspace

        run_workspace(reload=reload)
    elif service is ServiceName.api:
        from tradingsystem.tpcapital.app import run as run_api

        run_api(reload=reload)
    else:
        from tradingsystem.gateway.service import run as run_gateway

        run_gateway(reload=reload)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (tp_capital and workspace) to the configured or embedded database."""
    from tradingsystem.core.dbcli import migrate_command

    raise typer.Exit(asyncio.run(migrate_command()))


@db_app.command("url")
def db_url() -> None:
    """Print the database URL the services use: the configured one, else the embedded PostgreSQL's."""
    from tradingsystem.core.dbcli import url_command

    raise typer.Exit(url_command())


@workspace_app.command("migrate-lowdb")
def migrate_lowdb(
    path: Annotated[str, typer.Argument(help="The LowDB JSON file to import.")] = "data/library.json",
) -> None:
    """Import a legacy LowDB `library.json` into PostgreSQL in one transaction, then rename the file."""
    from tradingsystem.workspace.lowdb import migrate_lowdb_command

    raise typer.Exit(migrate_lowdb_command(path))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
